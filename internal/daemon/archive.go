package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// archiveRunner keeps the archiver running: a failure (a store that
// refuses writes, a full disk, NATS away) is retried with back-off from
// the archive's newest manifest, as after a crash, while /readyz says why;
// a sequence the stream no longer holds stops it for good, since
// archiving on would leave a hole no later run could fill.
type archiveRunner struct {
	open func(context.Context) (*worm.Archiver, error)
	// current is told of every archiver opened (progress metrics).
	current func(*worm.Archiver)
	log     *slog.Logger

	failures prometheus.Counter
	stopped  prometheus.Gauge

	mu        sync.Mutex
	err       error     // the last failure, nil while running
	since     time.Time // failing since
	restarted time.Time // an archiver ran again after it
	halted    bool      // stopped for good
}

// healthyAfter is how long a restarted archiver runs without failing
// before /readyz stops reporting the failure (a commit clears it sooner).
const healthyAfter = time.Minute

func newArchiveRunner(reg prometheus.Registerer, log *slog.Logger, open func(context.Context) (*worm.Archiver, error), current func(*worm.Archiver)) *archiveRunner {
	r := &archiveRunner{open: open, current: current, log: log,
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailkeeper_archive_failures_total",
			Help: "Times the archiver failed and was restarted from the archive's newest manifest.",
		}),
		stopped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trailkeeper_archive_stopped",
			Help: "1 when the archiver stopped for good: the stream no longer holds a sequence the archive lacks (see /readyz).",
		}),
	}
	reg.MustRegister(r.failures, r.stopped)
	return r
}

// Run runs archivers until ctx ends. One that stops for good leaves Run
// waiting for ctx (ingestion goes on, /readyz fails; in a fleet the role
// stays where it is rather than fail the same way on every daemon).
func (r *archiveRunner) Run(ctx context.Context, a *worm.Archiver) error {
	// The pipeline's retry library: exponential, jittered, capped.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = time.Second, 30*time.Second
	b.Reset()
	for {
		var err error
		if a == nil {
			a, err = r.open(ctx)
		}
		if err == nil {
			r.current(a)
			started := time.Now()
			r.mu.Lock()
			r.restarted = started
			r.mu.Unlock()
			err = a.Run(ctx)
			if time.Since(started) > healthyAfter {
				b.Reset() // it ran a while: a new failure
			}
		}
		if ctx.Err() != nil || err == nil {
			return nil
		}
		a = nil
		r.failures.Inc()
		var gone *tkjs.GoneError
		if errors.As(err, &gone) {
			r.set(err, true)
			r.stopped.Set(1)
			r.log.Error("archiver stopped: the archive cannot be complete", "err", err)
			<-ctx.Done()
			return nil
		}
		r.set(err, false)
		wait := b.NextBackOff()
		r.log.Error("archiver failed; restarting from the newest manifest", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (r *archiveRunner) set(err error, halted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.since = time.Now()
	}
	r.err, r.halted = err, halted
}

// Problem is what /readyz reports, nil while the archiver runs; p is the
// current archiver's progress.
func (r *archiveRunner) Problem(p worm.Progress) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil && !r.halted && r.restarted.After(r.since) &&
		(p.CommittedAt.After(r.restarted) || time.Since(r.restarted) > healthyAfter) {
		r.err = nil // it runs again
	}
	switch {
	case r.err == nil:
		return nil
	case r.halted:
		return fmt.Errorf("archive stopped: %w", r.err)
	default:
		return fmt.Errorf("archive failing since %s: %w", r.since.Format(time.RFC3339), r.err)
	}
}
