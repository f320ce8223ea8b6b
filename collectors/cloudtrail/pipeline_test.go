package cloudtrail

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// streamEnv is a real embedded JetStream with the AUDIT stream, and a
// checkpoint store that outlives the pipelines run on it.
type streamEnv struct {
	js    jetstream.JetStream
	pub   *tkjs.Publisher
	store checkpoint.Store
}

func newStreamEnv(t *testing.T) *streamEnv {
	_, _, js := embednatstest.Start(t)
	if _, err := tkjs.EnsureStream(context.Background(), js, tkjs.StreamConfig{Name: "AUDIT", DuplicateWindow: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	return &streamEnv{js: js, pub: tkjs.NewPublisher(js, "AUDIT"), store: checkpoint.NewMemory()}
}

// start runs a pipeline for st until the returned stop is called.
func (e *streamEnv) start(t *testing.T, st collectors.Stream) (stop func()) {
	return e.startWith(t, st, 0, 5*time.Second)
}

// startWith sets the checkpoint delay (the broker's sync interval, which
// commits wait for) and the shutdown grace.
func (e *streamEnv) startWith(t *testing.T, st collectors.Stream, checkpointDelay, grace time.Duration) (stop func()) {
	p := pipeline.New(pipeline.Settings{
		Source: "trail", Stream: st, Store: e.store, Sink: e.pub,
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

func (e *streamEnv) msgs(t *testing.T) uint64 {
	s, err := e.js.Stream(context.Background(), "AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartResumesWithoutDuplicates: a daemon stopped mid back-fill
// resumes from its saved cursor in a new process (new collector, empty
// seen-set), and the stream holds every event exactly once.
func TestRestartResumesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	mod := func(c *APIConfig) { c.Backfill = 4 * time.Hour }
	f := newLookupFixture(t, 200, mod)
	evs := f.evs
	env := newStreamEnv(t)

	stop := env.start(t, f.st)
	waitFor(t, "a saved cursor", 20*time.Second, func() bool {
		cur, _ := env.store.Load(context.Background(), "trail/000000000000/us-east-1")
		return cur != nil && env.msgs(t) >= 50
	})
	stop()
	first := env.msgs(t)
	if first >= uint64(len(evs)) {
		t.Fatalf("the first run read everything (%d); the restart tests nothing", first)
	}

	// A new process: a new collector on the same fake, the saved cursor.
	env.start(t, newLookupFixtureOn(t, f, mod))
	waitFor(t, "every event", 30*time.Second, func() bool { return env.msgs(t) >= uint64(len(evs)) })
	time.Sleep(300 * time.Millisecond) // anything extra would show up now
	if got := env.msgs(t); got != uint64(len(evs)) {
		t.Fatalf("stream holds %d messages for %d events", got, len(evs))
	}
}
