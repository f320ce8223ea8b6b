package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/sink"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sliceCollector serves fixed records; the cursor is the index of the next
// one, so polling the same cursor again returns the same page.
type sliceCollector struct {
	recs      []collectors.Record
	pageSize  int
	failPolls atomic.Int32 // fail this many polls before succeeding
	polls     atomic.Int32
}

func (c *sliceCollector) Poll(_ context.Context, cur []byte) (collectors.Page, error) {
	c.polls.Add(1)
	if c.failPolls.Load() > 0 {
		c.failPolls.Add(-1)
		return collectors.Page{}, errors.New("injected poll failure")
	}
	i := 0
	if cur != nil {
		i, _ = strconv.Atoi(string(cur))
	}
	j := min(i+c.pageSize, len(c.recs))
	return collectors.Page{Records: c.recs[i:j], Next: []byte(strconv.Itoa(j)), More: j < len(c.recs)}, nil
}

func ctRecord(i int) collectors.Record {
	return collectors.Record{Raw: fmt.Appendf(nil, `{"eventVersion":"1.08","eventID":"id-%04d","eventTime":"2024-01-01T00:00:%02dZ","eventSource":"s3.amazonaws.com","eventName":"PutObject","recipientAccountId":"123456789012"}`, i, i%60), Origin: fmt.Sprint("rec ", i)}
}

func records(n int) []collectors.Record {
	out := make([]collectors.Record, n)
	for i := range out {
		out[i] = ctRecord(i)
	}
	return out
}

type env struct {
	js    natsjs.JetStream
	pub   *jetstream.Publisher
	store *checkpoint.Memory
	reg   *prometheus.Registry
	m     *pipeline.Metrics
}

func newEnv(t *testing.T, withStream bool) *env {
	_, _, js := embednatstest.Start(t)
	if withStream {
		createStream(t, js)
	}
	reg := prometheus.NewRegistry()
	return &env{js: js, pub: jetstream.NewPublisher(js, "AUDIT"), store: checkpoint.NewMemory(), reg: reg, m: pipeline.NewMetrics(reg)}
}

func createStream(t *testing.T, js natsjs.JetStream) {
	t.Helper()
	if _, err := jetstream.EnsureStream(context.Background(), js, jetstream.StreamConfig{Name: "AUDIT", DuplicateWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) settings(c collectors.Collector) pipeline.Settings {
	return pipeline.Settings{
		Source: "test", Stream: collectors.Stream{Key: "test", Collector: c},
		Store: e.store, Sink: e.pub, Metrics: e.m,
		PollInterval: 20 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	}
}

// run starts p and returns a stop function that waits for it.
func run(t *testing.T, p *pipeline.Pipeline) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) cursor(t *testing.T) string {
	b, err := e.store.Load(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) streamIDs(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, "AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get("Nats-Msg-Id"))
	}
	return ids
}

func assertOnce(t *testing.T, ids []string, want int) {
	t.Helper()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("id %s stored twice", id)
		}
		seen[id] = true
	}
	if len(seen) != want {
		t.Errorf("stream holds %d distinct ids, want %d", len(seen), want)
	}
}

func TestAcceptedPagesAdvanceCursor(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(25), pageSize: 10}
	stop := run(t, pipeline.New(e.settings(c)))
	eventually(t, "cursor 25", func() bool { return e.cursor(t) == "25" })
	stop()
	assertOnce(t, e.streamIDs(t), 25)
	if got := e.m.Published(); got != 25 {
		t.Errorf("published metric = %v", got)
	}
}

func TestPollFailureKeepsCursor(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(25), pageSize: 10}
	c.failPolls.Store(5)
	stop := run(t, pipeline.New(e.settings(c)))
	eventually(t, "cursor 25", func() bool { return e.cursor(t) == "25" })
	stop()
	if n := e.m.PollErrors(); n != 5 {
		t.Errorf("poll errors = %v, want 5", n)
	}
	assertOnce(t, e.streamIDs(t), 25)
}

func TestPublishFailureKeepsCursor(t *testing.T) {
	e := newEnv(t, false) // no stream yet: every publish fails
	c := &sliceCollector{recs: records(25), pageSize: 10}
	p := pipeline.New(e.settings(c))
	stop := run(t, p)
	eventually(t, "publish retries", func() bool { return e.m.PublishErrors() >= 3 })
	if cur := e.cursor(t); cur != "" {
		t.Fatalf("cursor saved while publishing fails: %q", cur)
	}
	if c.polls.Load() != 1 {
		t.Errorf("polled %d times while the page was unpublished; want 1", c.polls.Load())
	}
	if p.Status().FailingSince.IsZero() {
		t.Error("status does not report the failure")
	}
	createStream(t, e.js)
	eventually(t, "cursor 25", func() bool { return e.cursor(t) == "25" })
	stop()
	assertOnce(t, e.streamIDs(t), 25)
	if !p.Status().FailingSince.IsZero() {
		t.Error("status still failing after recovery")
	}
}

// blockingSink acks nothing until its context ends.
type blockingSink struct{ entered chan struct{} }

func (b *blockingSink) Publish(ctx context.Context, _ []sink.Message) error {
	close(b.entered)
	<-ctx.Done()
	return ctx.Err()
}

func TestCancelMidPublishSavesNothing(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(25), pageSize: 10}
	set := e.settings(c)
	bs := &blockingSink{entered: make(chan struct{})}
	set.Sink = bs
	set.ShutdownTimeout = 50 * time.Millisecond
	stop := run(t, pipeline.New(set))
	<-bs.entered
	stop() // returns once the grace is over and the page abandoned
	if cur := e.cursor(t); cur != "" {
		t.Errorf("cursor saved for an unacknowledged page: %q", cur)
	}
}

// The page in flight at shutdown is finished and saved within the grace.
func TestShutdownFinishesPageInFlight(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(10), pageSize: 10}
	set := e.settings(c)
	set.CheckpointDelay = 100 * time.Millisecond
	gate := &gatedSink{inner: e.pub, entered: make(chan struct{}), release: make(chan struct{})}
	set.Sink = gate
	stop := run(t, pipeline.New(set))
	<-gate.entered
	go func() { time.Sleep(20 * time.Millisecond); close(gate.release) }()
	stop()
	if cur := e.cursor(t); cur != "10" {
		t.Errorf("cursor after graceful stop = %q, want 10", cur)
	}
}

type gatedSink struct {
	inner            sink.Sink
	entered, release chan struct{}
	once             sync.Once
}

func (g *gatedSink) Publish(ctx context.Context, msgs []sink.Message) error {
	g.once.Do(func() { close(g.entered) })
	<-g.release
	return g.inner.Publish(ctx, msgs)
}

// A restart from an older cursor re-publishes; the stream keeps each once.
func TestRestartRedeliversWithoutDuplicates(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(30), pageSize: 7}
	set := e.settings(c)
	set.CheckpointDelay = time.Hour // nothing ripens: as if killed before any save
	set.ShutdownTimeout = 10 * time.Millisecond
	stop := run(t, pipeline.New(set))
	eventually(t, "all published", func() bool { return e.m.Published() == 30 })
	stop()
	if cur := e.cursor(t); cur != "" {
		t.Fatalf("cursor saved before its delay: %q", cur)
	}
	// Second life: starts from the beginning again.
	set.CheckpointDelay = 0
	stop = run(t, pipeline.New(set))
	eventually(t, "cursor 30", func() bool { return e.cursor(t) == "30" })
	stop()
	assertOnce(t, e.streamIDs(t), 30)
}

// The cursor is saved no earlier than CheckpointDelay after the last ack.
type timingSink struct {
	inner   sink.Sink
	mu      sync.Mutex
	lastAck time.Time
}

func (s *timingSink) Publish(ctx context.Context, msgs []sink.Message) error {
	err := s.inner.Publish(ctx, msgs)
	s.mu.Lock()
	s.lastAck = time.Now()
	s.mu.Unlock()
	return err
}

type timingStore struct {
	countingStore
	sink  *timingSink
	delay time.Duration
	early atomic.Int32
}

func (s *timingStore) Save(ctx context.Context, key string, cur []byte) error {
	s.sink.mu.Lock()
	since := time.Since(s.sink.lastAck)
	s.sink.mu.Unlock()
	// Only the page whose cursor this is needs to be old enough; the last
	// ack may belong to a later page, so this is the strict form for the
	// final save and a loose bound otherwise.
	if string(cur) == "12" && since < s.delay {
		s.early.Add(1)
	}
	return s.countingStore.Save(ctx, key, cur)
}

func TestCheckpointWaitsForSyncInterval(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(12), pageSize: 4}
	set := e.settings(c)
	set.CheckpointDelay = 150 * time.Millisecond
	ts := &timingSink{inner: e.pub}
	st := &timingStore{countingStore: countingStore{Store: e.store}, sink: ts, delay: set.CheckpointDelay}
	set.Sink, set.Store = ts, st
	stop := run(t, pipeline.New(set))
	eventually(t, "cursor 12", func() bool { return e.cursor(t) == "12" })
	stop()
	if st.early.Load() > 0 {
		t.Error("cursor saved before the sync interval had passed since the last ack")
	}
	if st.saves.Load() > 3 {
		t.Errorf("%d saves for 3 pages", st.saves.Load())
	}
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t, true)
	bad := []collectors.Record{
		{Raw: []byte(`{"eventVersion":"1.08","eventID":"x","eventTime":"not a time"}`), Origin: "f.jsonl@0"},
		{Raw: []byte(`this is not json`), Origin: "f.jsonl@90"},
		{Raw: []byte{0x1f, 0x8b, 0x00}, Origin: "g.json.gz#part=1/1", Err: errors.New("gzip: unexpected EOF")},
	}
	c := &sliceCollector{recs: append(records(3), bad...), pageSize: 100}
	stop := run(t, pipeline.New(e.settings(c)))
	eventually(t, "cursor", func() bool { return e.cursor(t) == "6" })
	stop()
	ctx := context.Background()
	st, _ := e.js.Stream(ctx, "AUDIT")
	for i, want := range []struct{ subject, origin, errPart string }{
		{"audit.deadletter.aws", "f.jsonl@0", "eventTime"},
		{"audit.deadletter.unknown", "f.jsonl@90", "unknown record format"},
		{"audit.deadletter.unknown", "g.json.gz#part=1/1", "gzip"},
	} {
		m, err := st.GetMsg(ctx, uint64(4+i))
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != want.subject || m.Header.Get(pipeline.HeaderOrigin) != want.origin ||
			!bytes.Contains([]byte(m.Header.Get(pipeline.HeaderError)), []byte(want.errPart)) || !bytes.Equal(m.Data, bad[i].Raw) {
			t.Errorf("dead letter %d = %s %v %q", i, m.Subject, m.Header, m.Data)
		}
	}
	if n := e.m.DeadLetters(); n != 3 {
		t.Errorf("deadletter metric = %v", n)
	}
}

// The correlator sees every event and its changes are published.
type stampCorrelator struct{ calls atomic.Int32 }

func (s *stampCorrelator) Correlate(_ context.Context, evs []*normalize.Event) error {
	s.calls.Add(1)
	for _, ev := range evs {
		ev.JSON = append(ev.JSON[:len(ev.JSON)-1], []byte(`,"enrichments":[{"name":"iac.run"}]}`)...)
	}
	return nil
}

func TestCorrelatorHook(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(3), pageSize: 10}
	set := e.settings(c)
	sc := &stampCorrelator{}
	set.Correlator = sc
	stop := run(t, pipeline.New(set))
	eventually(t, "cursor", func() bool { return e.cursor(t) == "3" })
	stop()
	st, _ := e.js.Stream(context.Background(), "AUDIT")
	m, err := st.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(m.Data, []byte(`"iac.run"`)) || sc.calls.Load() != 1 {
		t.Errorf("correlator change not published: %s", m.Data)
	}
}

// countingStore counts saves.
type countingStore struct {
	checkpoint.Store
	saves atomic.Int32
}

func (s *countingStore) Save(ctx context.Context, key string, cur []byte) error {
	s.saves.Add(1)
	return s.Store.Save(ctx, key, cur)
}

// An idle source does not write its unchanged cursor on every poll.
func TestIdleSavesNothing(t *testing.T) {
	e := newEnv(t, true)
	c := &sliceCollector{recs: records(3), pageSize: 10}
	set := e.settings(c)
	cs := &countingStore{Store: e.store}
	set.Store = cs
	stop := run(t, pipeline.New(set))
	eventually(t, "cursor 3", func() bool { return e.cursor(t) == "3" })
	eventually(t, "idle polls", func() bool { return c.polls.Load() >= 10 })
	stop()
	if n := cs.saves.Load(); n != 1 {
		t.Errorf("%d saves for one page and %d idle polls", n, c.polls.Load()-1)
	}
}

// committingCollector records the commits it gets, and what had reached
// the stream by then.
type committingCollector struct {
	sliceCollector
	e       *env
	t       *testing.T
	mu      sync.Mutex
	commits []string
	stored  []int // stream message count at each commit
}

func (c *committingCollector) Commit(_ context.Context, next []byte) error {
	n := len(c.e.streamIDs(c.t))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commits = append(c.commits, string(next))
	c.stored = append(c.stored, n)
	return nil
}

func TestCommitAfterAckInPageOrder(t *testing.T) {
	e := newEnv(t, true)
	c := &committingCollector{sliceCollector: sliceCollector{recs: records(25), pageSize: 10}, e: e, t: t}
	set := e.settings(c)
	set.CheckpointDelay = 30 * time.Millisecond
	stop := run(t, pipeline.New(set))
	eventually(t, "the last commit", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.commits) == 3
	})
	stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if want := []string{"10", "20", "25"}; !slices.Equal(c.commits, want) {
		t.Errorf("commits %v, want %v", c.commits, want)
	}
	for i, n := range c.stored {
		if want := min((i+1)*10, 25); n < want {
			t.Errorf("commit %d came with %d messages stored, want ≥ %d", i, n, want)
		}
	}
}

func TestCollectorMessagesPublishedAsIs(t *testing.T) {
	e := newEnv(t, true)
	recs := records(2)
	recs = append(recs, collectors.Record{Message: &sink.Message{Subject: "audit.attest.aws.123456789012", ID: "attest:1", Data: []byte(`{"ok":true}`)}})
	c := &sliceCollector{recs: recs, pageSize: 10}
	stop := run(t, pipeline.New(e.settings(c)))
	eventually(t, "three messages", func() bool { return len(e.streamIDs(t)) == 3 })
	stop()
	if ids := e.streamIDs(t); !slices.Contains(ids, "attest:1") {
		t.Errorf("ids %v", ids)
	}
}

// gatingCollector closes the gate when it serves the page at close.
type gatingCollector struct {
	sliceCollector
	close  int
	open   atomic.Bool
	before func() // called at that page, before it is served
}

func (c *gatingCollector) Poll(ctx context.Context, cur []byte) (collectors.Page, error) {
	if string(cur) == strconv.Itoa(c.close) {
		c.open.Store(false)
		if c.before != nil {
			c.before()
		}
	}
	return c.sliceCollector.Poll(ctx, cur)
}

// A closed gate (a lease that may have expired) stops the pipeline at
// once: the page in flight is not saved, nothing more is polled, and Run
// says why.
func TestGateStopsWithoutSaving(t *testing.T) {
	e := newEnv(t, true)
	c := &gatingCollector{sliceCollector: sliceCollector{recs: records(30), pageSize: 10}, close: 10}
	c.open.Store(true)
	set := e.settings(c)
	set.Gate = func() error {
		if !c.open.Load() {
			return errors.New("lease expired")
		}
		return nil
	}
	err := pipeline.New(set).Run(context.Background())
	if err == nil || err.Error() != "lease expired" {
		t.Fatalf("Run = %v, want the gate's error", err)
	}
	if got := e.cursor(t); got != "10" {
		t.Errorf("cursor = %q, want 10: the page polled after the gate closed is not saved", got)
	}
	if n := c.polls.Load(); n != 2 {
		t.Errorf("%d polls, want 2", n)
	}
}

// An owner whose cursor was claimed by a newer one (a daemon paused past
// its lease) stops at its next save instead of overwriting the newer
// owner's progress.
func TestFencedCursorStops(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	kv, err := checkpoint.NewKV(ctx, e.js, checkpoint.KVConfig{Bucket: "cursors"})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := kv.Claim(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	c := &gatingCollector{sliceCollector: sliceCollector{recs: records(30), pageSize: 10}, close: 10}
	c.before = func() {
		newer, err := kv.Claim(ctx, "test")
		if err == nil {
			err = newer.Save(ctx, "test", []byte("25"))
		}
		if err != nil {
			t.Error(err)
		}
	}
	set := e.settings(c)
	set.Store = mine
	err = pipeline.New(set).Run(ctx)
	if !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("Run = %v, want ErrFenced", err)
	}
	if got, _ := kv.Load(ctx, "test"); string(got) != "25" {
		t.Errorf("cursor = %q, want the newer owner's 25", got)
	}
	if n := c.polls.Load(); n != 2 {
		t.Errorf("%d polls, want 2", n)
	}
}

// A publish waiting out a long back-off (an hour here, as after a long
// outage) is tried again as soon as the connection is back.
func TestReconnectCutsTheBackoffShort(t *testing.T) {
	e := newEnv(t, false) // no stream yet: every publish fails
	c := &sliceCollector{recs: records(25), pageSize: 10}
	set := e.settings(c)
	set.RetryInitial, set.RetryMax = time.Hour, time.Hour
	wake := pipeline.NewWake()
	set.Reconnected = wake
	stop := run(t, pipeline.New(set))
	eventually(t, "a failed publish", func() bool { return e.m.PublishErrors() >= 1 })
	createStream(t, e.js)
	wake.Fire()
	eventually(t, "cursor 25", func() bool { return e.cursor(t) == "25" })
	stop()
	assertOnce(t, e.streamIDs(t), 25)
	if n := e.m.PublishErrors(); n != 1 {
		t.Errorf("publish errors = %v, want 1", n)
	}
}
