package gcpaudit

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	gcpfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/gcp"
)

func TestFilterOnTheWireAndPaging(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := fakeLogging(t, clk)
	evs := entries("alpha-project", 2500, clk.Now().Add(-2*time.Minute))
	srv.Add(evs...)
	var nw noWait
	st := apiTestStreams(t, srv, clk, &nw, func(c *APIConfig) {
		c.Backfill = 48 * time.Hour
		c.Window = 48 * time.Hour
		c.Filter = `severity>=DEFAULT`
	})
	d := collectortest.Drain(t, st[0].Collector, nil)
	assertIDs(t, ids(t, d.Records), evs)

	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests for 2500 entries at 1000 a page", len(reqs))
	}
	f := reqs[0].Filter
	for _, log := range []string{"activity", "data_access", "system_event", "policy"} {
		if !strings.Contains(f, `logName="projects/alpha-project/logs/cloudaudit.googleapis.com%2F`+log+`"`) {
			t.Errorf("filter lacks the %s log: %s", log, f)
		}
	}
	bounds := regexp.MustCompile(`timestamp>="([^"]+)" AND timestamp<="([^"]+)"`).FindStringSubmatch(f)
	if bounds == nil {
		t.Fatalf("no explicit timestamp bounds: %s", f)
	}
	if from, _ := time.Parse(time.RFC3339Nano, bounds[1]); !from.Equal(clk.Now().Add(-48 * time.Hour)) {
		t.Errorf("lower bound %s: the back-fill start, not the library's 24 h default", bounds[1])
	}
	if !strings.HasSuffix(f, " AND (severity>=DEFAULT)") {
		t.Errorf("extra filter not ANDed: %s", f)
	}
	for _, r := range reqs[1:] {
		if r.Filter != f {
			t.Errorf("the window moved mid-scan:\n%s\n%s", f, r.Filter)
		}
	}
	if reqs[0].PageSize != 1000 {
		t.Errorf("page size %d", reqs[0].PageSize)
	}
	// Requests are spaced under the quota: 60 s / 50.
	for i, s := range nw.sleeps[1:] {
		if s < time.Minute/50-time.Millisecond {
			t.Errorf("request %d waited %s, under the quota spacing", i+1, s)
		}
	}
}

func TestQuotaExhaustedWaitsForNextMinuteAndLosesNothing(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := fakeLogging(t, clk)
	evs := entries("alpha-project", 1500, clk.Now().Add(-2*time.Minute))
	srv.Add(evs...)
	var nw noWait
	st := apiTestStreams(t, srv, clk, &nw, func(c *APIConfig) { c.Backfill = 48 * time.Hour; c.Window = 48 * time.Hour })
	c := st[0].Collector
	page, err := c.Poll(context.Background(), nil)
	if err != nil || len(page.Records) != 1000 {
		t.Fatalf("first page: %d, %v", len(page.Records), err)
	}
	srv.AddFault(gcpfake.Fault{Times: 2, Code: codes.ResourceExhausted})
	nw.sleeps = nil
	page2, err := c.Poll(context.Background(), page.Next)
	if err != nil {
		t.Fatalf("a quota error surfaced: %v", err)
	}
	got := append(ids(t, page.Records), ids(t, page2.Records)...)
	assertIDs(t, got, evs)
	toNextMinute := clk.Now().Truncate(time.Minute).Add(time.Minute).Sub(clk.Now())
	if len(nw.sleeps) < 3 || nw.sleeps[1] < toNextMinute {
		t.Errorf("waits after RESOURCE_EXHAUSTED: %v, want one of at least %s", nw.sleeps, toNextMinute)
	}
	reqs := srv.Requests()
	last := reqs[len(reqs)-1]
	if last.Code != codes.OK || last.Filter != reqs[0].Filter {
		t.Errorf("the page was not asked again with the same window: %+v", last)
	}
}

func TestLateEntryInsideOverlapIsCaught(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := fakeLogging(t, clk)
	evs := entries("alpha-project", 20, clk.Now().Add(-2*time.Minute))
	srv.Add(evs...)
	var nw noWait
	st := apiTestStreams(t, srv, clk, &nw, func(c *APIConfig) { c.Backfill = time.Hour })
	d := collectortest.Drain(t, st[0].Collector, nil)
	assertIDs(t, ids(t, d.Records), evs)

	late := entry("alpha-project", "late", clk.Now().Add(-7*time.Minute))
	late.Appear = clk.Now().Add(time.Minute)
	srv.Add(late)
	clk.Add(2 * time.Minute)
	d = collectortest.Drain(t, st[0].Collector, d.Cursor)
	if got := ids(t, d.Records); !slices.Equal(got, []string{"late"}) {
		t.Errorf("second poll read %v, want only the late entry", got)
	}
}

func TestProjectsKeepIndependentCursors(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := fakeLogging(t, clk)
	a := entries("alpha-project", 30, clk.Now().Add(-2*time.Minute))
	b := entries("bravo-project", 40, clk.Now().Add(-3*time.Minute))
	srv.Add(append(a, b...)...)
	var nw noWait
	st := apiTestStreams(t, srv, clk, &nw, func(c *APIConfig) {
		c.ResourceNames = []string{"projects/alpha-project", "projects/bravo-project"}
		c.Backfill = 2 * time.Hour
	})
	if len(st) != 2 || st[0].Key != "gcp/projects/alpha-project" || st[1].Key != "gcp/projects/bravo-project" {
		t.Fatalf("streams: %v", st)
	}
	da := collectortest.Drain(t, st[0].Collector, nil)
	assertIDs(t, ids(t, da.Records), a)
	db := collectortest.Drain(t, st[1].Collector, nil)
	assertIDs(t, ids(t, db.Records), b)
	// A new entry in alpha: alpha's next poll reads it, bravo's reads
	// nothing; each resumes from its own cursor.
	clk.Add(2 * time.Minute)
	fresh := entry("alpha-project", "alpha-new", clk.Now().Add(-90*time.Second))
	srv.Add(fresh)
	if got := ids(t, collectortest.Drain(t, st[0].Collector, da.Cursor).Records); !slices.Equal(got, []string{"alpha-new"}) {
		t.Errorf("alpha read %v, want its new entry", got)
	}
	if got := collectortest.Drain(t, st[1].Collector, db.Cursor).Records; len(got) != 0 {
		t.Errorf("bravo read %d records of alpha's", len(got))
	}

	// Batched: one request and one cursor for both.
	st2 := apiTestStreams(t, srv, clk, &nw, func(c *APIConfig) {
		c.Name = "batched"
		c.ResourceNames = []string{"projects/alpha-project", "projects/bravo-project"}
		c.BatchSize = 2
		c.Backfill = 2 * time.Hour
	})
	if len(st2) != 1 {
		t.Fatalf("batched streams: %v", st2)
	}
	d := collectortest.Drain(t, st2[0].Collector, nil)
	assertIDs(t, ids(t, d.Records), append(append(a, b...), fresh))
}

// TestRestartAndNonAuditThroughTheStream: a stopped poller resumes from
// its saved cursor with no duplicate on the stream, and a non-audit entry
// lands on the dead-letter subject.
func TestRestartAndNonAuditThroughTheStream(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := fakeLogging(t, clk)
	evs := entries("alpha-project", 2200, clk.Now().Add(-2*time.Minute))
	srv.Add(evs...)
	srv.Add(nonAudit("alpha-project", "app-log", clk.Now().Add(-90*time.Minute)))
	env := collectortest.NewStreamEnv(t)
	mod := func(c *APIConfig) { c.Backfill = 48 * time.Hour; c.Window = 48 * time.Hour }
	var nw noWait
	first := apiTestStreams(t, srv, clk, &nw, mod)[0]
	stop := env.Start(t, first, 0, 5*time.Second)
	collectortest.WaitFor(t, "a saved cursor", 20*time.Second, func() bool {
		cur, _ := env.Store.Load(context.Background(), first.Key)
		return cur != nil
	})
	stop()
	if n := env.Msgs(t, ""); n == 0 || n >= uint64(len(evs)) {
		t.Fatalf("first run published %d of %d", n, len(evs))
	}

	env.Start(t, apiTestStreams(t, srv, clk, &nw, mod)[0], 0, 5*time.Second)
	collectortest.WaitFor(t, "every entry", 30*time.Second, func() bool { return env.Msgs(t, "") >= uint64(len(evs)+1) })
	time.Sleep(200 * time.Millisecond)
	if got := env.Msgs(t, "audit.gcp.>"); got != uint64(len(evs)) {
		t.Errorf("stream holds %d events for %d entries", got, len(evs))
	}
	if got := env.Msgs(t, "audit.deadletter.gcp"); got != 1 {
		t.Errorf("%d dead letters, want the one non-audit entry", got)
	}
}

// TestUnavailableAndSlowPages: UNAVAILABLE is retried (by the client, else
// by the pipeline with the same cursor) and slow pages only slow.
func TestUnavailableAndSlowPages(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := fakeLogging(t, clk)
	evs := entries("alpha-project", 1200, clk.Now().Add(-2*time.Minute))
	srv.Add(evs...)
	srv.AddFault(gcpfake.Fault{Times: 1, Delay: 200 * time.Millisecond})
	srv.AddFault(gcpfake.Fault{Times: 2, Code: codes.Unavailable})
	var nw noWait
	st := apiTestStreams(t, srv, clk, &nw, func(c *APIConfig) { c.Backfill = 48 * time.Hour; c.Window = 48 * time.Hour })
	d := collectortest.Drain(t, st[0].Collector, nil)
	assertIDs(t, ids(t, d.Records), evs)
	unavailable := 0
	for _, r := range srv.Requests() {
		if r.Code == codes.Unavailable {
			unavailable++
		}
	}
	if unavailable != 2 {
		t.Errorf("%d UNAVAILABLE answers, want the 2 injected", unavailable)
	}
}
