package cloudtrail

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

func eventID(t testing.TB, raw []byte) string {
	t.Helper()
	var r struct{ EventID string }
	if err := json.Unmarshal(raw, &r); err != nil || r.EventID == "" {
		t.Fatalf("record without eventID: %s", raw)
	}
	return r.EventID
}

// apiStreams builds the streams of cfg (defaults when nil) on the fake.
func apiStreams(t testing.TB, clk *clock, base aws.Config, mod func(*APIConfig), reg prometheus.Registerer) []collectors.Stream {
	t.Helper()
	cfg := NewAPIConfig()
	cfg.Name = "trail"
	cfg.Regions = []string{"us-east-1"}
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	streams, err := APIStreams(context.Background(), collectors.Settings{Now: clk.Now, Registerer: reg}, cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	return streams
}

func assertIDs(t *testing.T, got []string, want []awsfake.Event) {
	t.Helper()
	var w []string
	for _, e := range want {
		w = append(w, e.ID)
	}
	collectortest.SameIDs(t, got, w)
}

// lookupFixture is a fake holding n events of the default account in
// us-east-1, the newest 10 minutes old, and the one stream of the default
// API config changed by mod.
type lookupFixture struct {
	clk *clock
	srv *awsfake.Server
	st  collectors.Stream
	evs []awsfake.Event
}

func newLookupFixture(t testing.TB, n int, mod func(*APIConfig)) lookupFixture {
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	evs := events(awsfake.DefaultAccount, "us-east-1", n, clk.Now().Add(-10*time.Minute))
	srv.AddEvents(evs...)
	st := apiStreams(t, clk, base, mod, nil)
	if len(st) != 1 {
		t.Fatalf("streams = %+v", st)
	}
	return lookupFixture{clk, srv, st[0], evs}
}

func TestLookupPaginatesWindowsForward(t *testing.T) {
	t.Parallel()
	f := newLookupFixture(t, 120, func(c *APIConfig) { c.Backfill = 3 * time.Hour })
	clk, srv, evs := f.clk, f.srv, f.evs
	if f.st.Key != "trail/000000000000/us-east-1" {
		t.Fatalf("stream key %q", f.st.Key)
	}
	ids, cur := drain(t, f.st.Collector, nil)
	assertIDs(t, ids, evs)
	var c scan.Cursor
	_ = json.Unmarshal(cur, &c)
	if want := clk.Now().Add(-20 * time.Minute); !c.Start.Equal(want) {
		t.Errorf("next window starts %s, want now-overlap %s", c.Start, want)
	}
	// A NextToken is bound to its window: any moved window is refused.
	for _, r := range srv.Requests() {
		if r.Op == "CloudTrail.LookupEvents" && r.Status != 200 {
			t.Errorf("request failed: %+v", r)
		}
	}
}

func TestOverlapCatchesLateEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		overlap time.Duration
		caught  bool
	}{
		{"overlap 20m", 20 * time.Minute, true},
		{"naive: no overlap beyond lag", 5 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			srv, base := fakeAWS(t, clk)
			evs := events(awsfake.DefaultAccount, "us-east-1", 30, clk.Now().Add(-6*time.Minute))
			srv.AddEvents(evs...)
			st := apiStreams(t, clk, base, func(c *APIConfig) { c.Backfill = time.Hour; c.Overlap = tc.overlap }, nil)
			ids, cur := drain(t, st[0].Collector, nil)
			assertIDs(t, ids, evs)

			// An event 12 minutes old becomes visible only now.
			late := awsfake.MakeEvent(awsfake.DefaultAccount, "us-east-1", "late", "DeleteBucket", clk.Now().Add(-12*time.Minute))
			late.Appear = clk.Now().Add(2 * time.Minute)
			srv.AddEvents(late)
			clk.Add(3 * time.Minute)
			ids, _ = drain(t, st[0].Collector, cur)
			if got := slices.Contains(ids, "late"); got != tc.caught {
				t.Errorf("late event read: %v, want %v (ids %v)", got, tc.caught, ids)
			}
			if slices.ContainsFunc(ids, func(id string) bool { return id != "late" }) {
				t.Errorf("events published before came back: %v (the seen-set should drop them)", ids)
			}
		})
	}
}

func TestThrottlingSlowsDownAndLosesNothing(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	srv.SetLookupLimit(1, 1) // stricter than the client's 1.9
	evs := events(awsfake.DefaultAccount, "us-east-1", 230, clk.Now().Add(-10*time.Minute))
	srv.AddEvents(evs...)
	reg := prometheus.NewRegistry()
	st := apiStreams(t, clk, base, func(c *APIConfig) { c.Backfill = 5 * time.Hour }, reg)
	ids, _ := drain(t, st[0].Collector, nil)
	assertIDs(t, ids, evs)
	throttled := 0
	for _, r := range srv.Requests() {
		if r.Status == 400 {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("the fake never throttled; the test tests nothing")
	}
	m := newMetrics(reg)
	if got := testutil.ToFloat64(m.throttled.WithLabelValues(st[0].Key)); int(got) != throttled {
		t.Errorf("throttled metric %v, fake throttled %d", got, throttled)
	}
	if got := testutil.ToFloat64(m.rate.WithLabelValues(st[0].Key)); got >= 1.9 {
		t.Errorf("limiter still at %v after throttling", got)
	}
}

func TestServerErrorMidScanResumesSameWindow(t *testing.T) {
	t.Parallel()
	f := newLookupFixture(t, 120, func(c *APIConfig) { c.Window = 3 * time.Hour; c.Backfill = 3 * time.Hour })
	clk, srv, evs, c := f.clk, f.srv, f.evs, f.st.Collector
	page, err := c.Poll(context.Background(), nil)
	if err != nil || len(page.Records) != 50 || !page.More {
		t.Fatalf("first page: %d records, more %v, %v", len(page.Records), page.More, err)
	}
	ids := []string{}
	for _, r := range page.Records {
		ids = append(ids, eventID(t, r.Raw))
	}
	_ = c.(collectors.Committer).Commit(context.Background(), page.Next)
	srv.AddFault(awsfake.Fault{Op: "CloudTrail.LookupEvents", Times: 3, Status: 500}) // every SDK attempt
	if _, err := c.Poll(context.Background(), page.Next); err == nil {
		t.Fatal("poll succeeded through a 500")
	}
	clk.Add(10 * time.Minute) // time passes while it fails; the window must not move
	rest, _ := drain(t, c, page.Next)
	assertIDs(t, append(ids, rest...), evs)
	for _, r := range srv.Requests() {
		if r.Status == 400 {
			t.Errorf("a request was refused (a moved window invalidates the token): %+v", r)
		}
	}
}

func TestFanOutAccountsRegions(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk, awsfake.WithRegions("us-east-1", "eu-west-1"))
	var all [][]awsfake.Event
	for _, acct := range []string{"111111111111", "222222222222"} {
		for _, r := range []string{"eu-west-1", "us-east-1"} {
			evs := events(acct, r, 60, clk.Now().Add(-10*time.Minute))
			srv.AddEvents(evs...)
			all = append(all, evs)
		}
	}
	st := apiStreams(t, clk, base, func(c *APIConfig) {
		c.Accounts = []string{"111111111111", "222222222222"}
		c.RoleARN = "arn:aws:iam::{account}:role/trailkeeper-reader"
		c.ExternalID = "ext-42"
		c.SourceIdentity = "trailkeeper"
		c.Regions = []string{AllEnabled}
		c.Backfill = 2 * time.Hour
	}, nil)
	var keys []string
	for i, s := range st {
		keys = append(keys, s.Key)
		ids, _ := drain(t, s.Collector, nil)
		assertIDs(t, ids, all[i]) // only its own account and region
	}
	want := []string{"trail/111111111111/eu-west-1", "trail/111111111111/us-east-1", "trail/222222222222/eu-west-1", "trail/222222222222/us-east-1"}
	if !slices.Equal(keys, want) {
		t.Errorf("stream keys %v, want %v", keys, want)
	}
	calls := srv.AssumeRoles()
	if len(calls) < 2 {
		t.Fatalf("AssumeRole calls: %+v", calls)
	}
	for _, c := range calls {
		if c.ExternalID != "ext-42" || c.SessionName != "trailkeeper" || c.SourceIdentity != "trailkeeper" {
			t.Errorf("AssumeRole %+v", c)
		}
	}
}

// TestRateLimitHolds: over a long back-fill, the limiter never lets more
// than 2 requests of an account-region go in any second. Sends are timed
// where they leave the SDK (the server's arrival times add the test
// machine's scheduling jitter), and the fake, enforcing AWS's 2/s itself,
// refuses none.
func TestRateLimitHolds(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	srv.SetLookupLimit(2, 2)
	sends := &sendLog{}
	base.HTTPClient = sends
	// Two pages per 30-minute window (60 events), for 5 hours: 20 requests,
	// ~10 s. Windows of two pages keep their span.
	var evs []awsfake.Event
	for i := range 600 {
		at := clk.Now().Add(-10*time.Minute - time.Duration(i)*30*time.Second)
		evs = append(evs, awsfake.MakeEvent(awsfake.DefaultAccount, "us-east-1", fmt.Sprint("e", i), "RunInstances", at))
	}
	srv.AddEvents(evs...)
	st := apiStreams(t, clk, base, func(c *APIConfig) { c.Backfill = 5*time.Hour + 10*time.Minute; c.Window = 30 * time.Minute }, nil)
	ids, _ := drain(t, st[0].Collector, nil)
	assertIDs(t, ids, evs)
	for _, r := range srv.Requests() {
		if r.Status != 200 {
			t.Errorf("the fake refused a request: %+v", r)
		}
	}
	checkPacing(t, sends.times(), 2)
}

// sendLog is an SDK HTTP client that notes when each LookupEvents leaves.
type sendLog struct {
	mu sync.Mutex
	at []time.Time
}

func (l *sendLog) Do(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".LookupEvents") {
		l.mu.Lock()
		l.at = append(l.at, time.Now())
		l.mu.Unlock()
	}
	return http.DefaultClient.Do(req)
}

func (l *sendLog) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.at)
}

func checkPacing(t *testing.T, sends []time.Time, perSecond int) {
	t.Helper()
	for i, a := range sends {
		in := 0
		for _, b := range sends[i:] {
			if b.Sub(a) < time.Second {
				in++
			}
		}
		if in > perSecond {
			t.Errorf("%d requests in the second after request %d", in, i)
		}
	}
	if len(sends) < 20 {
		t.Errorf("only %d requests: not a long back-fill", len(sends))
	}
}

// TestSparseBackfillWidensWindows: 30 days of an account with 5 events
// cost a dozen requests, not 720 one-hour windows.
func TestSparseBackfillWidensWindows(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	var evs []awsfake.Event
	for i := range 5 {
		evs = append(evs, awsfake.MakeEvent(awsfake.DefaultAccount, "us-east-1", fmt.Sprint("e", i), "CreateUser", clk.Now().Add(-time.Duration(i*6+1)*24*time.Hour)))
	}
	srv.AddEvents(evs...)
	st := apiStreams(t, clk, base, func(c *APIConfig) { c.Backfill = 30 * 24 * time.Hour }, nil)
	ids, _ := drain(t, st[0].Collector, nil)
	assertIDs(t, ids, evs)
	if n := countOp(srv, "CloudTrail.LookupEvents"); n > 13 {
		t.Errorf("%d requests for a sparse 30-day back-fill", n)
	}
}

// TestRetryAfterAndSlowPages: a throttling answer with Retry-After holds
// the next attempt back that long; slow pages only slow the poll.
func TestRetryAfterAndSlowPages(t *testing.T) {
	t.Parallel()
	f := newLookupFixture(t, 80, func(c *APIConfig) { c.Backfill = 3 * time.Hour; c.Window = 3 * time.Hour })
	srv := f.srv
	srv.AddFault(awsfake.Fault{Op: "CloudTrail.LookupEvents", Times: 1, Status: 400, Code: "ThrottlingException", RetryAfter: 2})
	srv.AddFault(awsfake.Fault{Op: "CloudTrail.LookupEvents", Times: 2, Delay: 300 * time.Millisecond})
	ids, _ := drain(t, f.st.Collector, nil)
	assertIDs(t, ids, f.evs)
	var reqs []awsfake.Request
	for _, r := range srv.Requests() {
		if r.Op == "CloudTrail.LookupEvents" {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) < 2 || reqs[0].Status != 400 {
		t.Fatalf("requests: %+v", reqs)
	}
	if gap := reqs[1].Wall.Sub(reqs[0].Wall); gap < 2*time.Second {
		t.Errorf("retried %s after a Retry-After of 2s", gap)
	}
}

// newLookupFixtureOn builds a fresh stream (a restarted process) on f's
// fake and clock.
func newLookupFixtureOn(t testing.TB, f lookupFixture, mod func(*APIConfig)) collectors.Stream {
	_, base := fakeConfig(f.srv)
	return apiStreams(t, f.clk, base, mod, nil)[0]
}
