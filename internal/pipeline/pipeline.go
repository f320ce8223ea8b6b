package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/sink"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Headers of dead-letter messages.
const (
	HeaderError  = "Trailkeeper-Error"
	HeaderOrigin = "Trailkeeper-Origin"
	HeaderSource = "Trailkeeper-Source"
)

// Correlator enriches the events of a page before they are published (IaC
// run links). It may change the events in place, including their JSON. A
// non-nil error fails the page, which is retried. It is called from one
// goroutine per pipeline, but shared by all pipelines.
type Correlator interface {
	Correlate(ctx context.Context, events []*normalize.Event) error
}

// NopCorrelator leaves events as they are.
type NopCorrelator struct{}

// Correlate implements Correlator.
func (NopCorrelator) Correlate(context.Context, []*normalize.Event) error { return nil }

// Settings of one pipeline.
type Settings struct {
	Source     string // the source's name, for metrics and logs
	Stream     collectors.Stream
	Store      checkpoint.Store
	Sink       sink.Sink
	Correlator Correlator // nil: NopCorrelator
	Logger     *slog.Logger
	Metrics    *Metrics // nil: a throw-away registry

	PollInterval time.Duration
	// CheckpointDelay is the broker's fsync interval; see the package doc.
	CheckpointDelay time.Duration
	RetryInitial    time.Duration
	RetryMax        time.Duration
	ShutdownTimeout time.Duration
	Now             func() time.Time // nil: time.Now

	// Reconnected, if set, fires when the NATS connection comes back:
	// a publish or cursor save waiting out its back-off is retried at once.
	Reconnected *Wake

	// Hold, if set, is waited on before every poll: while it blocks (a
	// full disk) no new page is taken. It returns an error only when its
	// context ends.
	Hold func(context.Context) error

	// Gate, if set, is asked before every poll and every cursor save; an
	// error stops the pipeline at once, without the shutdown grace and
	// without saving, and Run returns it. A fleet's lease passes while it
	// is surely still held (no network call), so a daemon that was paused
	// past its lease neither polls nor saves once it runs again.
	Gate func() error
}

// Pipeline is the loop of one source stream.
type Pipeline struct {
	set Settings
	log *slog.Logger
	m   *Metrics

	mu           sync.Mutex
	failingSince time.Time
	lastErr      error
	newest       time.Time // newest event published
	saved        time.Time // last cursor save
	stopErr      error     // the gate closed or the cursor was fenced
}

// New returns a pipeline; call Run to start it.
func New(set Settings) *Pipeline {
	if set.Correlator == nil {
		set.Correlator = NopCorrelator{}
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if set.Metrics == nil {
		set.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if set.Now == nil {
		set.Now = time.Now
	}
	if set.RetryInitial <= 0 {
		set.RetryInitial = time.Second
	}
	if set.RetryMax < set.RetryInitial {
		set.RetryMax = max(set.RetryInitial, 5*time.Minute)
	}
	return &Pipeline{set: set, m: set.Metrics, log: set.Logger.With("source", set.Source, "stream", set.Stream.Key)}
}

// Status says whether the pipeline is failing, and since when, and how
// far it got.
type Status struct {
	FailingSince time.Time // zero when healthy
	LastError    error
	Newest       time.Time // the newest event it published; zero: none yet
	Saved        time.Time // when it last saved its cursor; zero: not yet
}

// Status returns the current status; safe for concurrent use.
func (p *Pipeline) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{FailingSince: p.failingSince, LastError: p.lastErr, Newest: p.newest, Saved: p.saved}
}

// Key is the stream's cursor key.
func (p *Pipeline) Key() string { return p.set.Stream.Key }

// Source is the configured source's name.
func (p *Pipeline) Source() string { return p.set.Source }

// stop records why the pipeline must stop at once; the first reason wins.
func (p *Pipeline) stop(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopErr == nil {
		p.stopErr = err
	}
}

func (p *Pipeline) stopped() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopErr
}

// gate asks Settings.Gate; a closed gate stops the pipeline.
func (p *Pipeline) gate() error {
	if p.set.Gate == nil {
		return nil
	}
	if err := p.set.Gate(); err != nil {
		p.stop(err)
		return err
	}
	return nil
}

// Collector is the stream's collector, for the daemon to close.
func (p *Pipeline) Collector() collectors.Collector { return p.set.Stream.Collector }

// PollInterval is the configured interval, for health checks.
func (p *Pipeline) PollInterval() time.Duration { return p.set.PollInterval }

func (p *Pipeline) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.failingSince, p.lastErr = time.Time{}, nil
		return
	}
	if p.failingSince.IsZero() {
		p.failingSince = p.set.Now()
	}
	p.lastErr = err
}

type pendingSave struct {
	cursor []byte
	due    time.Time
}

// Run loops until ctx ends; see the package doc. It returns nil after a
// clean stop, or the error that made it stop (never a page failure, which
// is retried).
func (p *Pipeline) Run(ctx context.Context) error {
	// work outlives ctx by ShutdownTimeout, for the page in flight.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	// A stream this process no longer runs (handed to another daemon of
	// a fleet) has no lag here.
	defer p.m.lag.DeleteLabelValues(p.set.Source, p.set.Stream.Key)
	var grace atomic.Pointer[time.Timer]
	stopGrace := context.AfterFunc(ctx, func() {
		if p.set.Gate != nil && p.set.Gate() != nil {
			cancelWork() // the lease is gone: no grace, someone else may start
			return
		}
		grace.Store(time.AfterFunc(p.set.ShutdownTimeout, cancelWork))
	})
	defer func() {
		stopGrace()
		if t := grace.Load(); t != nil {
			t.Stop()
		}
	}()

	var cursor []byte
	err := p.retry(ctx, p.m.saveErrors, "load cursor", true, func() error {
		var err error
		cursor, err = p.set.Store.Load(ctx, p.set.Stream.Key)
		return err
	})
	if err != nil {
		return nil // stopped before it started
	}

	var pending []pendingSave
	for ctx.Err() == nil && p.stopped() == nil {
		if p.set.Hold != nil {
			if err := p.set.Hold(ctx); err != nil {
				break // stopped while held
			}
		}
		var page collectors.Page
		start := time.Now()
		err := p.retry(ctx, p.m.pollErrors, "poll", false, func() error {
			if err := p.gate(); err != nil {
				return err
			}
			var err error
			page, err = p.set.Stream.Collector.Poll(ctx, cursor)
			return err
		})
		if err != nil {
			break // stopped
		}
		p.m.pollSeconds.WithLabelValues(p.set.Source).Observe(time.Since(start).Seconds())
		p.m.polled.WithLabelValues(p.set.Source).Add(float64(len(page.Records)))

		if len(page.Records) > 0 {
			if err := p.publishPage(work, page); err != nil {
				break // abandoned at shutdown: nothing saved
			}
			pending = append(pending, pendingSave{page.Next, p.set.Now().Add(p.set.CheckpointDelay)})
		} else if page.Next != nil && !bytes.Equal(page.Next, cursor) {
			// Nothing to publish, so nothing to wait for: the collector
			// may still have moved (skipped files, advanced a window). An
			// unchanged cursor is not saved again.
			pending = append(pending, pendingSave{page.Next, p.set.Now()})
		}
		if page.Next != nil {
			cursor = page.Next
		}
		pending = p.saveDue(work, pending, false)
		if page.More {
			continue
		}
		pending = p.idle(ctx, work, pending)
	}
	if err := p.stopped(); err != nil {
		return err // nothing more may be saved
	}
	// Stopping: save the newest cursor once it is ripe, within the grace.
	p.saveDue(work, pending, true)
	return p.stopped()
}

// idle waits one poll interval, saving cursors as they ripen.
func (p *Pipeline) idle(ctx, work context.Context, pending []pendingSave) []pendingSave {
	next := time.NewTimer(p.set.PollInterval)
	defer next.Stop()
	for {
		var ripe <-chan time.Time
		var t *time.Timer
		if len(pending) > 0 {
			t = time.NewTimer(pending[0].due.Sub(p.set.Now()))
			ripe = t.C
		}
		select {
		case <-ctx.Done():
		case <-next.C:
		case <-ripe:
			pending = p.saveDue(work, pending, false)
			continue
		}
		if t != nil {
			t.Stop()
		}
		return pending
	}
}

// saveDue saves the newest pending cursor whose delay has passed (all of
// them when final, waiting for the last one to ripen) and returns the rest.
func (p *Pipeline) saveDue(work context.Context, pending []pendingSave, final bool) []pendingSave {
	if len(pending) == 0 {
		return pending
	}
	now := p.set.Now()
	n := 0
	for n < len(pending) && !pending[n].due.After(now) {
		n++
	}
	if final && n < len(pending) {
		last := pending[len(pending)-1]
		t := time.NewTimer(last.due.Sub(now))
		defer t.Stop()
		select {
		case <-t.C:
		case <-work.Done():
			// Grace is over; save what is ripe and abandon the rest.
			return p.saveDue(work, pending, false)
		}
		n = len(pending)
	}
	if n == 0 || p.gate() != nil {
		return pending
	}
	if c, ok := p.set.Stream.Collector.(collectors.Committer); ok {
		for _, ps := range pending[:n] {
			if err := c.Commit(work, ps.cursor); err != nil {
				p.log.Warn("commit failed; the source will deliver again", "err", err)
			}
		}
	}
	cur := pending[n-1].cursor
	err := p.retry(work, p.m.saveErrors, "save cursor", true, func() error {
		return p.set.Store.Save(work, p.set.Stream.Key, cur)
	})
	if err != nil {
		return pending[n:] // abandoned at shutdown or fenced; committed pages are not committed twice
	}
	p.mu.Lock()
	p.saved = p.set.Now()
	p.mu.Unlock()
	p.m.saves.WithLabelValues(p.set.Source).Inc()
	return pending[n:]
}

// publishPage normalizes, correlates and publishes one page, retrying until
// every message is acknowledged or work ends.
func (p *Pipeline) publishPage(work context.Context, page collectors.Page) error {
	msgs, events, dead := p.build(page)
	err := p.retry(work, p.m.pubErrors, "correlate", true, func() error {
		return p.set.Correlator.Correlate(work, events)
	})
	if err != nil {
		return err
	}
	for i, ev := range events {
		msgs[i].Data = ev.JSON // the correlator may have rewritten it
	}
	start := time.Now()
	err = p.retry(work, p.m.pubErrors, "publish", true, func() error {
		return p.set.Sink.Publish(work, msgs)
	})
	if err != nil {
		p.log.Warn("page abandoned at shutdown; it will be polled again", "count", len(msgs))
		return err
	}
	p.m.pubSeconds.WithLabelValues(p.set.Source).Observe(time.Since(start).Seconds())
	var newest time.Time
	perCloud := map[string]int{}
	for _, ev := range events {
		perCloud[ev.Cloud]++
		if ev.Time.After(newest) {
			newest = ev.Time
		}
	}
	for cloud, n := range perCloud {
		p.m.published.WithLabelValues(p.set.Source, cloud).Add(float64(n))
	}
	for cloud, n := range dead {
		p.m.deadletter.WithLabelValues(p.set.Source, cloud).Add(float64(n))
	}
	if !newest.IsZero() {
		p.mu.Lock()
		if newest.After(p.newest) {
			p.newest = newest
		}
		p.mu.Unlock()
		p.m.lag.WithLabelValues(p.set.Source, p.set.Stream.Key).Set(p.set.Now().Sub(newest).Seconds())
	}
	deadN := len(msgs) - len(events)
	p.log.Info("page published", "count", len(events), "deadletter", deadN, "newest", newest)
	return nil
}

// build turns records into messages: events first (in the order of the
// returned events slice), then dead letters.
func (p *Pipeline) build(page collectors.Page) ([]sink.Message, []*normalize.Event, map[string]int) {
	events := make([]*normalize.Event, 0, len(page.Records))
	var deadMsgs []sink.Message
	dead := map[string]int{}
	var own []sink.Message
	for _, r := range page.Records {
		if r.Message != nil {
			own = append(own, *r.Message)
			continue
		}
		cause := r.Err
		if cause == nil {
			ev, err := normalize.Normalize(r.Raw, r.Format)
			if err == nil {
				events = append(events, ev)
				continue
			}
			cause = err
		}
		cloud := r.Format.Cloud()
		if r.Format == normalize.FormatUnknown {
			cloud = normalize.Sniff(r.Raw).Cloud()
		}
		dead[cloud]++
		deadMsgs = append(deadMsgs, sink.Message{
			Subject: jetstream.DeadLetterSubject(cloud),
			ID:      DeadLetterID(r.Raw),
			Header:  map[string]string{HeaderError: headerValue(cause.Error()), HeaderOrigin: headerValue(r.Origin), HeaderSource: p.set.Source},
			Data:    r.Raw,
		})
	}
	msgs := make([]sink.Message, 0, len(events)+len(own)+len(deadMsgs))
	for _, ev := range events {
		msgs = append(msgs, sink.Message{
			Subject: jetstream.EventSubject(ev.Cloud, ev.Account, ev.Service),
			ID:      ev.UID,
			Data:    ev.JSON,
		})
	}
	msgs = append(msgs, own...)
	return append(msgs, deadMsgs...), events, dead
}

// DeadLetterID is the message id of a dead letter: a hash of its bytes, so
// a re-polled bad record is dropped by the stream like any repeat.
func DeadLetterID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "deadletter:" + hex.EncodeToString(sum[:16])
}

// headerValue keeps a header on one line and within reason.
func headerValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	if len(b) > 1024 {
		b = b[:1024]
	}
	return string(b)
}

// retry runs op until it succeeds or ctx ends, backing off with jitter
// between attempts; it returns an error only when ctx ended or the
// pipeline was stopped. A NATS operation (onNATS) is tried again at once
// when the connection comes back, rather than after the rest of a back-off
// that may have grown to minutes during the outage.
func (p *Pipeline) retry(ctx context.Context, errCounter *prometheus.CounterVec, what string, onNATS bool, op func() error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = p.set.RetryInitial, p.set.RetryMax
	b.Reset()
	for {
		var wake <-chan struct{}
		if onNATS && p.set.Reconnected != nil {
			wake = p.set.Reconnected.C() // before the attempt: a reconnect during it counts
		}
		err := op()
		if err == nil {
			p.setErr(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, checkpoint.ErrFenced) {
			p.stop(err)
		}
		if serr := p.stopped(); serr != nil {
			return fmt.Errorf("%s: %w", what, serr)
		}
		next := b.NextBackOff()
		errCounter.WithLabelValues(p.set.Source).Inc()
		p.setErr(err)
		p.log.Warn(what+" failed; retrying on the same cursor", "err", err, "retry_in", next.Round(time.Millisecond))
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-wake:
			t.Stop()
			b.Reset()
			p.log.Info(what + ": NATS is back; retrying now")
		}
	}
}
