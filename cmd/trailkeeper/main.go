// Command trailkeeper collects cloud audit trails, normalizes them to OCSF
// and publishes them to NATS JetStream. This is the only package that
// prints to the terminal or calls os.Exit.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/daemon"
	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// Set with -ldflags "-X main.version=… -X main.commit=…".
// errSilent fails a command that already printed its findings.
var errSilent = errors.New("findings reported")

var (
	version = ""
	commit  = ""
)

func main() {
	if err := newRoot().Execute(); err != nil {
		var pe config.Problems
		if errors.Is(err, errSilent) {
			os.Exit(1) // the command said why on its output
		}
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code) // exec passes its child's status on
		}
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
	root.AddCommand(runCmd(), validateCmd(), normalizeCmd(), keygenCmd(), verifyCmd(), proveCmd(), execCmd(), runTokenCmd(), fakeAWSCmd(), versionCmd(),
		whoChangedCmd(), timelineCmd(), driftCmd(), showCmd(), reindexCmd(), benchCmd(), healthCmd(), fleetCmd())
	return root
}

func runCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(file)
			if err != nil {
				return err
			}
			httpapi.Version, _, _ = buildInfo()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go reloadNotices(ctx, file, log)
			return daemon.Run(ctx, cfg, daemon.Settings{Logger: log, Registry: registry.Default})
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "trailkeeper.yaml", "config file")
	return c
}

// reloadNotices answers SIGHUP: sources are not reloaded in place yet, so
// it checks the config file and says whether a restart would take it.
func reloadNotices(ctx context.Context, file string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if _, err := config.Load(file, registry.Default); err != nil {
				log.Error("SIGHUP: the config file has problems; the running config stays", "config", file, "err", err)
			} else {
				log.Warn("SIGHUP: the config file is valid, but reloading in place is not supported yet: restart to apply it", "config", file)
			}
		}
	}
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

// cliFormats are the --format values of normalize.
var cliFormats = map[string]normalize.Format{
	"auto": normalize.FormatUnknown, "cloudtrail": normalize.FormatCloudTrail,
	"gcp": normalize.FormatGCPAudit, "azure": normalize.FormatAzureREST,
}

func normalizeCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "normalize [--format auto|cloudtrail|gcp|azure] [FILE…|-]",
		Short: "Map raw audit records to OCSF JSON Lines on stdout",
		Long: `Reads audit records in any shape trailkeeper knows (CloudTrail log files,
LookupEvents output, JSON Lines exports, Azure records/value documents,
EventBridge, SNS, SQS and Pub/Sub envelopes; gzip detected) and writes one
OCSF event per line to stdout. Records that cannot be mapped are reported on
stderr with the reason and counted in a summary line. The exit status is
non-zero only when input cannot be read.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			hint, ok := cliFormats[format]
			if !ok {
				return fmt.Errorf("--format must be auto, cloudtrail, gcp or azure, not %q", format)
			}
			if len(args) == 0 {
				args = []string{"-"}
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			stderr := cmd.ErrOrStderr()
			var mapped, failed int
			for _, name := range args {
				content, err := readInput(cmd.InOrStdin(), name)
				if err != nil {
					return err
				}
				var raws []normalize.Raw
				if n := strings.TrimSuffix(strings.ToLower(name), ".gz"); strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".ndjson") {
					raws = normalize.SplitLines(content) // a bad line is one bad record
				} else {
					raws, err = normalize.SplitAny(content)
				}
				if err != nil {
					failed++
					fmt.Fprintf(stderr, "%s: %v\n", name, err)
					continue
				}
				for i, r := range raws {
					where := fmt.Sprintf("%s#%d", name, i)
					if r.Line > 0 {
						where = fmt.Sprintf("%s:%d", name, r.Line)
					}
					f := r.Format
					if hint != normalize.FormatUnknown {
						f = hint
					}
					ev, err := normalize.Normalize(r.Bytes, f)
					if err != nil {
						failed++
						fmt.Fprintf(stderr, "%s: %v\n", where, err)
						continue
					}
					mapped++
					out.Write(ev.JSON)
					out.WriteByte('\n')
				}
			}
			fmt.Fprintf(stderr, "%d events, %d records not mapped\n", mapped, failed)
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "auto", "record format: auto, cloudtrail, gcp or azure")
	return c
}

// readInput reads a file (or stdin for -), decompressing gzip.
func readInput(stdin io.Reader, name string) ([]byte, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
	}
	return b, nil
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version and build information",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v, c, goVersion := buildInfo()
			fmt.Fprintf(cmd.OutOrStdout(), "trailkeeper %s\ncommit %s\n%s\nOCSF %s\n", v, c, goVersion, normalize.OCSFVersion)
		},
	}
}

// buildInfo is the version (-ldflags, else the module's), the commit and
// the Go version.
func buildInfo() (v, c, goVersion string) {
	v, c, goVersion = version, commit, "unknown"
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
	return v, c, goVersion
}

// loadConfig loads and validates a config file, and makes its logger.
func loadConfig(file string) (*config.Config, *slog.Logger, error) {
	cfg, err := config.Load(file, registry.Default)
	if err != nil {
		return nil, nil, err
	}
	return cfg, newLogger(cfg.Log, os.Stderr), nil
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
