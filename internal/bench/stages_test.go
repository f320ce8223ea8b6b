package bench_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/trailkeeper/trailkeeper/internal/bench"
)

// BenchmarkStages reports each stage's cost per record with its baselines
// beside it, measured in the same run as trailkeeper bench measures them
// (TRAILKEEPER_BENCH_RECORDS records, default 20 000). Each iteration is a
// whole measurement: run it with -benchtime 1x, or more for repeats.
func BenchmarkStages(b *testing.B) {
	n := 20000
	if s := os.Getenv("TRAILKEEPER_BENCH_RECORDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	var r bench.Report
	for b.Loop() {
		var err error
		r, err = bench.Run(context.Background(), bench.Settings{Records: n, Archive: true, Examples: "../../examples/data",
			WorkDir: b.TempDir(), StagesOnly: true})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, st := range r.Stages {
		name := strings.NewReplacer(" ", "-", "(", "", ")", "", "+", "-").Replace(st.Name)
		b.Run(name, func(b *testing.B) {
			b.ReportMetric(st.NsPerRecord, "ns/record")
			b.ReportMetric(st.AllocsPerRecord, "allocs/record")
			b.ReportMetric(st.BytesPerRecord, "B/record")
		})
	}
	b.Run("cloudtrail-speedup-vs-naive", func(b *testing.B) { b.ReportMetric(r.CloudTrailGain, "x") })
}
