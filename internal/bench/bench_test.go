package bench_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/bench"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The bench is also a correctness run: every record of the corpus
// arrives once in the stream, the archive and the index.
func TestBenchSmall(t *testing.T) {
	const n = 3000
	r, err := bench.Run(context.Background(), bench.Settings{Records: n, Archive: true, Examples: "../../examples/data",
		WorkDir: t.TempDir(), Sample: 1500, SegmentAge: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.StreamMsgs != n || r.DuplicateIDs != 0 {
		t.Errorf("stream: %d events, %d duplicate ids; want %d, 0", r.StreamMsgs, r.DuplicateIDs, n)
	}
	if r.Indexed != n {
		t.Errorf("index: %d changes, want %d", r.Indexed, n)
	}
	// The archive holds every event and every run record.
	if runs := int64(n / 100); r.Archived != n+runs && r.Archived != n+runs+1 {
		t.Errorf("archive: %d leaves, want %d events and the run records", r.Archived, n)
	}
	if r.ByCloud["aws"] != n/3 || r.ByCloud["gcp"] != n/3 || r.ByCloud["azure"] != n/3 {
		t.Errorf("by cloud: %v", r.ByCloud)
	}
	for _, v := range []float64{r.PublishedPerSec, r.EndToEndPerSec, r.RawPublishPerSec, r.CloudTrailGain, r.LatencyP99Ms, r.PeakRSSMB, r.StreamBytesPerRecord, r.ArchiveBytesPerRecord, r.IndexBytesPerRecord} {
		if v <= 0 {
			t.Errorf("a figure is missing: %+v", r)
			break
		}
	}
}
