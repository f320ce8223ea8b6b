package cloudtrail

import (
	"fmt"
	"testing"
	"time"

	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

// BenchmarkBackfillLimitShare back-fills through the fake with AWS's real
// limit (2 requests/s per account-region) and reports how much of it the
// poller used: requests per second achieved / 2. Target ≥ 0.9; the
// limiter's ceiling is 1.9 so that network jitter never pushes AWS's own
// count over 2. Each op is one request, at real time (~0.5 s).
func BenchmarkBackfillLimitShare(b *testing.B) {
	clk := newClock()
	srv, base := fakeAWS(b, clk)
	srv.SetLookupLimit(2, 2)
	// One page per window: every request is one poll.
	var evs []awsfake.Event
	for i := range 20000 {
		evs = append(evs, awsfake.MakeEvent(awsfake.DefaultAccount, "us-east-1", fmt.Sprint("e", i), "RunInstances", clk.Now().Add(-10*time.Minute-time.Duration(i)*2*time.Minute)))
	}
	srv.AddEvents(evs...)
	st := apiStreams(b, clk, base, func(c *APIConfig) { c.Backfill = 90 * 24 * time.Hour; c.Window = 30 * time.Minute }, nil)
	c := st[0].Collector
	var cur []byte
	for b.Loop() {
		page, err := c.Poll(b.Context(), cur)
		if err != nil {
			b.Fatal(err)
		}
		cur = page.Next
	}
	// The rate between the first and the last request: n requests span
	// n-1 intervals.
	var first, last time.Time
	n := 0
	for _, r := range srv.Requests() {
		if r.Op != "CloudTrail.LookupEvents" {
			continue
		}
		if r.Status != 200 {
			b.Errorf("request refused: %+v", r)
		}
		if n == 0 {
			first = r.Wall
		}
		last = r.Wall
		n++
	}
	if n > 1 {
		b.ReportMetric(float64(n-1)/last.Sub(first).Seconds()/2, "limit-share")
	}
}
