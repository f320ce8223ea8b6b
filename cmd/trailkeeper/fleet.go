package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/internal/daemon"
	"github.com/trailkeeper/trailkeeper/internal/fleet"
)

func fleetCmd() *cobra.Command {
	c := &cobra.Command{Use: "fleet", Short: "Several daemons on one NATS cluster: who owns what, and whether the cluster matches the config"}
	c.AddCommand(fleetStatusCmd(), fleetCheckCmd())
	return c
}

func fleetStatusCmd() *cobra.Command {
	var cl client
	c := &cobra.Command{
		Use:   "status",
		Short: "Daemons alive, the sources each owns, lease ages and lag per source (from any daemon of the fleet)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st fleet.Status
			b, err := cl.get("/v1/fleet", nil, &st)
			if err != nil {
				if strings.Contains(err.Error(), "HTTP 404") {
					return fmt.Errorf("%w (is fleet.enabled set on that daemon?)", err)
				}
				return err
			}
			if cl.asJSON {
				return emit(cmd.OutOrStdout(), b)
			}
			return fleetTable(cmd.OutOrStdout(), st)
		},
	}
	cl.flags(c)
	return c
}

// age prints a duration since t, or "-".
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func fleetTable(w io.Writer, st fleet.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAEMON\tOWNS\tCAN RUN\tHEARTBEAT\tUP\tHTTP\tVERSION")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s ago\t%s\t%s\t%s\n", m.Name, m.Owns, m.Units, age(st.Time, m.Heartbeat), age(st.Time, m.Started), m.HTTP, m.Version)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "UNIT\tSOURCE\tHOLDER\tLEASE AGE\tLAG\tCURSOR SAVED")
	for _, u := range st.Units {
		holder := u.Holder
		switch {
		case holder == "":
			holder = "(none; to " + u.Assigned + ")"
		case u.Assigned != "" && u.Assigned != u.Holder:
			holder += " (moving to " + u.Assigned + ")"
		}
		lag := "-"
		if u.LagSeconds != nil {
			lag = (time.Duration(*u.LagSeconds * float64(time.Second))).Round(time.Second).String()
		}
		saved := "-"
		if !u.Saved.IsZero() {
			saved = age(st.Time, u.Saved) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Key, u.Source, holder, age(st.Time, u.Since), lag, saved)
	}
	return tw.Flush()
}

func fleetCheckCmd() *cobra.Command {
	var file string
	var apply bool
	c := &cobra.Command{
		Use:   "check",
		Short: "Check that the stream and the buckets on NATS match the config (replicas, limits, placement); --apply changes them to match",
		Long: `Daemons never change an existing stream or bucket at start-up: they refuse to
start and list every difference, since on a shared cluster replicas, limits
and placement are the operator's call. This command shows the same list,
and with --apply updates the stream and buckets to the config (JetStream
moves replicas as needed). With the embedded server, stop the daemon first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(file)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if err := daemon.CheckLayout(ctx, cfg, apply); err != nil {
				return err
			}
			if apply {
				fmt.Fprintln(cmd.OutOrStdout(), "the stream and the buckets match the config (changed where they differed)")
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "the stream and the buckets match the config")
			}
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "trailkeeper.yaml", "config file")
	c.Flags().BoolVar(&apply, "apply", false, "change the stream and buckets to match the config")
	return c
}
