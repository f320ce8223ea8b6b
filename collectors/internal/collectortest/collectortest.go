// Package collectortest runs collectors the way the daemon does, for their
// tests: polled and committed like the pipeline polls them, or inside a
// real pipeline publishing to a real embedded JetStream.
package collectortest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Drained is what Drain got.
type Drained struct {
	Records []collectors.Record
	Errs    int // failed polls, each repeated with the same cursor
	Cursor  []byte
}

// Drain polls c like the pipeline does (a failed poll is repeated with the
// same cursor; a page's Next is committed) until a poll says there is no
// more.
func Drain(t testing.TB, c collectors.Collector, cur []byte) Drained {
	t.Helper()
	var d Drained
	for range 10000 {
		page, err := c.Poll(context.Background(), cur)
		if err != nil {
			d.Errs++
			continue
		}
		d.Records = append(d.Records, page.Records...)
		if cm, ok := c.(collectors.Committer); ok && page.Next != nil {
			_ = cm.Commit(context.Background(), page.Next)
		}
		cur = page.Next
		if !page.More {
			d.Cursor = cur
			return d
		}
	}
	t.Fatal("poll never finished")
	return d
}

// StreamEnv is a real embedded JetStream with the AUDIT stream, and a
// checkpoint store that outlives the pipelines run on it (a restart).
type StreamEnv struct {
	JS    jetstream.JetStream
	Pub   *tkjs.Publisher
	Store checkpoint.Store
}

// NewStreamEnv starts the server; it stops with the test.
func NewStreamEnv(t *testing.T) *StreamEnv {
	_, _, js := embednatstest.Start(t)
	if _, err := tkjs.EnsureStream(context.Background(), js, tkjs.StreamConfig{Name: "AUDIT", DuplicateWindow: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	return &StreamEnv{JS: js, Pub: tkjs.NewPublisher(js, "AUDIT"), Store: checkpoint.NewMemory()}
}

// Start runs a pipeline for st until the returned stop is called (or the
// test ends). checkpointDelay is the broker's sync interval, which cursor
// saves and commits wait for; grace is the shutdown timeout.
func (e *StreamEnv) Start(t *testing.T, st collectors.Stream, checkpointDelay, grace time.Duration) (stop func()) {
	p := pipeline.New(pipeline.Settings{
		Source: "test", Stream: st, Store: e.Store, Sink: e.Pub,
		PollInterval: 20 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 50 * time.Millisecond,
		CheckpointDelay: checkpointDelay, ShutdownTimeout: grace,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// Msgs is how many messages the stream holds on subjects matching filter
// ("" for all).
func (e *StreamEnv) Msgs(t testing.TB, filter string) uint64 {
	t.Helper()
	s, err := e.JS.Stream(context.Background(), "AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	info, err := s.Info(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if filter == "" {
		return info.State.Msgs
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// WaitFor polls cond until it holds, or fails the test after d.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Clock is a settable clock for a fake cloud and its collector. Its zero
// time means the real clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

// Add moves the clock.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Real makes the clock follow real time.
func (c *Clock) Real() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = time.Time{}
}

// SameIDs fails the test unless got holds exactly want, each once, in any
// order.
func SameIDs(t testing.TB, got, want []string) {
	t.Helper()
	w := slices.Sorted(slices.Values(want))
	g := slices.Sorted(slices.Values(got))
	if !slices.Equal(g, w) {
		t.Fatalf("got %d ids (%d distinct), want %d", len(g), len(slices.Compact(slices.Clone(g))), len(w))
	}
}
