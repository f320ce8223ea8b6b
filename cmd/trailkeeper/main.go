// Command trailkeeper collects cloud audit trails, normalizes them to OCSF
// and publishes them to NATS JetStream. This is the only package that
// prints to the terminal or calls os.Exit.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/daemon"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// Set with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = ""
	commit  = ""
)

func main() {
	if err := newRoot().Execute(); err != nil {
		var pe config.Problems
		if errors.As(err, &pe) {
			fmt.Fprintln(os.Stderr, pe.Error())
			fmt.Fprintf(os.Stderr, "%d problem(s)\n", len(pe))
		} else {
			fmt.Fprintln(os.Stderr, "trailkeeper:", err)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "trailkeeper",
		Short:         "Collect cloud audit trails, normalize them to OCSF, publish them to NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), validateCmd(), normalizeCmd(), versionCmd())
	return root
}

func runCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file, registry.Default)
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log, os.Stderr)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, cfg, daemon.Settings{Logger: log, Registry: registry.Default})
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "trailkeeper.yaml", "config file")
	return c
}

func validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate-config FILE",
		Short: "Check a config file and print every problem with its path and line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := config.Load(args[0], registry.Default); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
}

func normalizeCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "normalize [FILE…]",
		Short: "Map raw records (one JSON record per line) to OCSF JSON Lines on stdout; - or no file reads stdin",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"-"}
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			failed := 0
			for _, name := range args {
				var r io.Reader = cmd.InOrStdin()
				if name != "-" {
					f, err := os.Open(name)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				sc := bufio.NewScanner(r)
				sc.Buffer(make([]byte, 1<<20), 64<<20)
				for line := 1; sc.Scan(); line++ {
					if len(sc.Bytes()) == 0 {
						continue
					}
					ev, err := normalize.Normalize(sc.Bytes(), normalize.Format(format))
					if err != nil {
						failed++
						fmt.Fprintf(cmd.ErrOrStderr(), "%s:%d: %v\n", name, line, err)
						continue
					}
					out.Write(ev.JSON)
					out.WriteByte('\n')
				}
				if err := sc.Err(); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d record(s) could not be normalized", failed)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "record format (default: detect per record)")
	return c
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version and build information",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v, c, goVersion := version, commit, "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if v == "" {
					v = bi.Main.Version
				}
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && c == "" {
						c = s.Value
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trailkeeper %s\ncommit %s\n%s\nOCSF %s\n", v, c, goVersion, normalize.OCSFVersion)
		},
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
