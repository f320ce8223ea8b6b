package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/internal/daemon"
	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/internal/index"
)

// client talks to a daemon's query API.
type client struct {
	server, token string
	asJSON        bool
	http          *http.Client
}

func (c *client) flags(cmd *cobra.Command) {
	server := os.Getenv("TRAILKEEPER_SERVER")
	if server == "" {
		server = "http://127.0.0.1:9464"
	}
	cmd.Flags().StringVar(&c.server, "server", server, "the daemon's HTTP address (env TRAILKEEPER_SERVER)")
	cmd.Flags().StringVar(&c.token, "token", os.Getenv("TRAILKEEPER_API_TOKEN"), "the query API's bearer token (env TRAILKEEPER_API_TOKEN)")
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "print the API's JSON")
}

// get fetches path into out, and returns the body too (for --json).
func (c *client) get(path string, v url.Values, out any) ([]byte, error) {
	u := strings.TrimSuffix(c.server, "/") + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := c.http
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Param string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			if e.Param != "" {
				return nil, fmt.Errorf("%s: %s", e.Param, e.Error)
			}
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return b, json.Unmarshal(b, out)
}

// emit prints raw JSON for --json.
func emit(w io.Writer, b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, out.String())
	return err
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// changeTable prints changes as a table.
func changeTable(w io.Writer, items []index.Change, withResource bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "TIME (UTC)\tCLOUD\tACCOUNT\tACTOR\tACTION\tOUTCOME\tIAC"
	if withResource {
		head += "\tRESOURCE"
	}
	fmt.Fprintln(tw, head)
	for _, c := range items {
		actor := c.Actor.ID
		if c.Actor.Name != "" {
			actor += " (" + c.Actor.Name + ")"
		}
		iac := c.Link.Band
		if c.Link.RunKey != "" {
			iac += " " + c.Link.RunKey
		}
		if c.OutOfPlan {
			iac += " OUT-OF-PLAN"
		}
		for _, d := range c.Drift {
			iac += " drift:" + d.Type
		}
		line := strings.Join([]string{ts(c.Time), c.Cloud, c.Account, actor, c.Action, c.Outcome, strings.TrimSpace(iac)}, "\t")
		if withResource && len(c.Resources) > 0 {
			r := c.Resources[0].UID
			if r == "" {
				r = c.Resources[0].Name
			}
			if len(c.Resources) > 1 {
				r += fmt.Sprintf(" (+%d)", len(c.Resources)-1)
			}
			line += "\t" + r
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func whoChangedCmd() *cobra.Command {
	var c client
	var since string
	var reads bool
	var limit int
	cmd := &cobra.Command{
		Use:   "who-changed RESOURCE [--since 24h]",
		Short: "Who changed a resource (exact id, id prefix or name fragment), through which run, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := url.Values{"resource": {args[0]}, "limit": {fmt.Sprint(limit)}}
			if since != "" {
				v.Set("since", since)
			}
			if !reads {
				v.Set("mutating", "true")
			}
			var page index.Page[index.Change]
			b, err := c.get("/v1/changes", v, &page)
			if err != nil {
				return err
			}
			if c.asJSON {
				return emit(cmd.OutOrStdout(), b)
			}
			if len(page.Items) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "No changes to %s%s.\n", args[0], map[bool]string{true: " since " + since, false: ""}[since != ""])
				return nil
			}
			if err := changeTable(cmd.OutOrStdout(), page.Items, true); err != nil {
				return err
			}
			if page.Next != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "(more: raise --limit, or narrow with --since)\n")
			}
			return nil
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&since, "since", "", "only changes since: an age (24h, 7d), a date or RFC 3339")
	cmd.Flags().BoolVar(&reads, "reads", false, "include reads, not only changes")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many (up to 1000)")
	return cmd
}

func timelineCmd() *cobra.Command {
	var c client
	var run string
	cmd := &cobra.Command{
		Use:   "timeline --run KEY",
		Short: "Everything an IaC run did, across clouds, oldest first, with out-of-plan changes marked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/runs/" + url.PathEscape(run) + "/changes"
			var view httpapi.RunView
			b, err := c.get(path, url.Values{"limit": {"1000"}}, &view)
			if err != nil {
				return err
			}
			if c.asJSON {
				return emit(cmd.OutOrStdout(), b)
			}
			items := view.Changes.Items
			for next := view.Changes.Next; next != ""; {
				var more httpapi.RunView
				if _, err := c.get(path, url.Values{"limit": {"1000"}, "cursor": {next}}, &more); err != nil {
					return err
				}
				items, next = append(items, more.Changes.Items...), more.Changes.Next
			}
			w := cmd.OutOrStdout()
			if r := view.Run; r != nil {
				end := "running"
				if r.FinishedAt != nil {
					end = ts(*r.FinishedAt) + " " + r.Status
				}
				fmt.Fprintf(w, "Run %s: %s via %s\n  repo %s, commit %s, workspace %s, actor %s\n  %s – %s\n\n",
					r.Key, r.Tool, r.Orchestrator, r.Scope.Repo, r.Commit, r.Scope.Workspace, r.Actor, ts(r.StartedAt), end)
			} else {
				fmt.Fprintf(w, "Run %s (not in the run registry)\n\n", run)
			}
			if err := changeTable(w, items, true); err != nil {
				return err
			}
			if len(view.Plan) > 0 {
				fmt.Fprintln(w, "\nPlanned vs applied:")
				for _, p := range view.Plan {
					state := "NOT SEEN"
					if len(p.Applied) > 0 {
						state = fmt.Sprintf("applied (%d events)", len(p.Applied))
					}
					fmt.Fprintf(w, "  %-50s %-20s %s\n", p.Address, strings.Join(p.Actions, ","), state)
				}
			}
			if len(view.Drift) > 0 {
				fmt.Fprintln(w, "\nDrift on its resources since it started:")
				return driftTable(w, view.Drift)
			}
			return nil
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&run, "run", "", "the run key")
	_ = cmd.MarkFlagRequired("run")
	return cmd
}

func driftTable(w io.Writer, items []index.Drift) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANGED (UTC)\tTYPE\tCLOUD\tACCOUNT\tRESOURCE\tBEST RUN\tEVENT")
	for _, d := range items {
		fmt.Fprintln(tw, strings.Join([]string{ts(d.Time), d.Type, d.Cloud, d.Account, d.Resource, d.RunKey, d.EventUID}, "\t"))
	}
	return tw.Flush()
}

func driftCmd() *cobra.Command {
	var c client
	var since string
	var limit int
	cmd := &cobra.Command{
		Use:   "drift [--since 7d]",
		Short: "Changes to IaC-managed resources that no run explains, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page index.Page[index.Drift]
			b, err := c.get("/v1/drift", url.Values{"since": {since}, "limit": {fmt.Sprint(limit)}}, &page)
			if err != nil {
				return err
			}
			if c.asJSON {
				return emit(cmd.OutOrStdout(), b)
			}
			if len(page.Items) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "No drift since %s.\n", since)
				return nil
			}
			return driftTable(cmd.OutOrStdout(), page.Items)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&since, "since", "7d", "an age (24h, 7d), a date or RFC 3339")
	cmd.Flags().IntVar(&limit, "limit", 200, "at most this many (up to 1000)")
	return cmd
}

func showCmd() *cobra.Command {
	var c client
	cmd := &cobra.Command{
		Use:   "show UID",
		Short: "One event: what the index knows, the full OCSF event, and its archive proof",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v httpapi.EventView
			b, err := c.get("/v1/events/"+url.PathEscape(args[0]), nil, &v)
			if err != nil {
				return err
			}
			if c.asJSON {
				return emit(cmd.OutOrStdout(), b)
			}
			w := cmd.OutOrStdout()
			ch := v.Change
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			row := func(k, v string) {
				if v != "" {
					fmt.Fprintf(tw, "%s\t%s\n", k, v)
				}
			}
			row("uid", ch.UID)
			row("time", ts(ch.Time)+" UTC")
			row("cloud", strings.TrimSpace(ch.Cloud+" "+ch.Account+" "+ch.Region))
			row("actor", strings.TrimSpace(ch.Actor.ID+" "+ch.Actor.Name+" ("+ch.Actor.Type+")"))
			row("action", strings.TrimSpace(ch.Action+" "+ch.Service))
			for _, r := range ch.Resources {
				row("resource", strings.TrimSpace(r.UID+" "+r.Type))
			}
			row("outcome", ch.Outcome)
			row("iac", strings.TrimSpace(ch.Link.Band+" "+ch.Link.RunKey))
			for _, d := range ch.Drift {
				row("drift", d.Type+" "+d.UID)
			}
			row("stream", fmt.Sprintf("seq %d %s", ch.Seq, v.Subject))
			if v.Proof != nil {
				row("archive", fmt.Sprintf("leaf %d of %d, inclusion proof of %d hashes (check it: show --json > p.json; verify --proof p.json --key KEY)", v.Proof.Leaf, v.Proof.TreeSize, len(v.Proof.Path)))
			} else {
				row("archive", v.ProofError)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(v.Event) > 0 {
				fmt.Fprintf(w, "\nOCSF event (from the %s):\n", v.Source)
				return emit(w, v.Event)
			}
			return nil
		},
	}
	c.flags(cmd)
	return cmd
}

func reindexCmd() *cobra.Command {
	var file string
	var fromArchive bool
	cmd := &cobra.Command{
		Use:   "reindex --config FILE [--from-archive]",
		Short: "Rebuild the change index from the stream (and the archive for what the stream no longer holds); stop the daemon first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(file)
			if err != nil {
				return err
			}
			start := time.Now()
			st, err := daemon.Reindex(cmd.Context(), cfg, fromArchive, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d changes, %d drift findings, up to stream sequence %d, %.1f MB, in %s\n",
				cfg.IndexPath(), st.Changes, st.Drift, st.LastSeq, float64(st.Bytes)/1e6, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "trailkeeper.yaml", "config file")
	cmd.Flags().BoolVar(&fromArchive, "from-archive", false, "read everything the archive holds from the archive, not only what the stream has aged out")
	return cmd
}
