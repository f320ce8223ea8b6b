package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/bench"
)

func benchCmd() *cobra.Command {
	var (
		set                    bench.Settings
		clouds, archive        string
		asJSON                 bool
		cpuProfile, memProfile string
	)
	cmd := &cobra.Command{
		Use:   "bench [--records N] [--clouds aws,gcp,azure] [--archive dir|none] [--json]",
		Short: "Measure throughput, per-stage cost, latency, memory and disk end to end, against baselines from the same run",
		Long: `Builds a corpus by varying the ids, times, principals and resources of the
real records in examples/data (trail .json.gz files, GCP and Azure exports),
measures each stage alone (decode, map, correlate, encode, publish, archive,
index) with the raw JetStream publish ceiling and the encoding/json map round
trip beside them, then runs the real pipeline end to end on an embedded
JetStream (files collector, normalize, correlate against a run registry,
publish, archiver, index) and checks that every record arrived once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set.Clouds = strings.Split(clouds, ",")
			switch archive {
			case "dir":
				set.Archive = true
			case "none":
			default:
				return fmt.Errorf("--archive must be dir or none, not %q", archive)
			}
			if set.Records < 100 {
				return fmt.Errorf("--records must be at least 100")
			}
			set.Logger = newLogger(config.Log{Level: "warn"}, os.Stderr)
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			set.HeapProfile = memProfile
			r, err := bench.Run(cmd.Context(), set)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printReport(cmd.OutOrStdout(), r)
			if r.DuplicateIDs != 0 || r.StreamMsgs != uint64(r.Records) || r.Indexed != int64(r.Records) {
				return fmt.Errorf("not every record arrived exactly once")
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&set.Records, "records", 100000, "records in the corpus")
	cmd.Flags().StringVar(&clouds, "clouds", "aws,gcp,azure", "clouds of the corpus")
	cmd.Flags().StringVar(&archive, "archive", "dir", "dir: archive to a folder; none")
	cmd.Flags().StringVar(&set.Examples, "examples", "examples/data", "the real records to vary")
	cmd.Flags().StringVar(&set.WorkDir, "workdir", "", "where the corpus, stream, archive and index go (default: a temporary folder, removed)")
	cmd.Flags().IntVar(&set.Sample, "sample", 20000, "records the stage measurements use")
	cmd.Flags().DurationVar(&set.SegmentAge, "segment-age", time.Second, "the archive's segment age (the daemon's default is 1m; publish-to-archived latency is at most about this)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "the report as JSON")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write a heap profile at the end-to-end run's largest heap (it holds allocations too: -sample_index=alloc_space)")
	return cmd
}

func printReport(w io.Writer, r bench.Report) {
	fmt.Fprintf(w, "corpus: %d records %v, %.0f MB raw; stage sample %d\n\n", r.Records, r.ByCloud, r.CorpusMB, r.Sample)
	fmt.Fprintf(w, "end to end: %.0f records/s published (%.2f of the raw publish ceiling, %.0f/s), %.0f records/s archived and indexed (%.1f s)\n",
		r.PublishedPerSec, r.PublishVsRaw, r.RawPublishPerSec, r.EndToEndPerSec, r.EndToEndSeconds)
	fmt.Fprintf(w, "CloudTrail decode+map+encode: %.1f µs/record, %.2f× the naive map round trip (%.1f µs)\n",
		r.CloudTrailNsPerRecord/1000, r.CloudTrailGain, r.NaiveNsPerRecord/1000)
	fmt.Fprintf(w, "publish → archived: p50 %.0f ms, p99 %.0f ms (segment age %s)\n", r.LatencyP50Ms, r.LatencyP99Ms, r.SegmentAge)
	fmt.Fprintf(w, "peak RSS %.0f MB; on disk per record: stream %.0f B, archive %.0f B, index %.0f B\n", r.PeakRSSMB, r.StreamBytesPerRecord, r.ArchiveBytesPerRecord, r.IndexBytesPerRecord)
	fmt.Fprintf(w, "exactly once: %d events in the stream, %d duplicate ids, %d archived leaves (events and run records), %d indexed\n\n",
		r.StreamMsgs, r.DuplicateIDs, r.Archived, r.Indexed)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tns/record\tallocs/record\tB/record\t\t")
	for _, s := range r.Stages {
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.0f\t\t%s\n", s.Name, s.NsPerRecord, s.AllocsPerRecord, s.BytesPerRecord, s.Note)
	}
	tw.Flush()
}
