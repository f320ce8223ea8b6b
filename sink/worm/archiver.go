package worm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// CheckpointSubject is where every checkpoint is also published, outside
// the archived stream, so that copies can be kept elsewhere (anchors).
const CheckpointSubject = "trailkeeper.checkpoint"

// Settings of the archiver.
type Settings struct {
	JS       jetstream.JetStream
	NC       *nats.Conn // publishes checkpoints
	Stream   string
	Consumer string // durable name; default ARCHIVER
	Store    Store
	Signer   note.Signer
	// Origin names the log in its checkpoints.
	Origin string
	// A segment is cut at SegmentBytes of uncompressed lines, after
	// SegmentAge, and at a UTC day boundary.
	SegmentBytes int
	SegmentAge   time.Duration
	// Settle is how long a message must have been in the stream before
	// the segment holding it is stored: the broker's fsync interval. A
	// broker that dies before it synced a message gives its sequence to
	// another one when it comes back; an archive that had taken it would
	// then hold a message the stream lost, and miss the one that took its
	// place.
	Settle time.Duration
	// IdleCheckpoint re-publishes the newest checkpoint when nothing was
	// archived for that long.
	IdleCheckpoint time.Duration
	Logger         *slog.Logger
}

// Archiver copies the whole stream into the archive: a durable pull
// consumer whose messages are acknowledged only after the segment holding
// them, its manifest and a checkpoint are stored. The newest manifest says
// which stream sequence was archived last, so a redelivered message is
// never archived twice; a segment stored by a run that died before its
// manifest is adopted at the next start.
type Archiver struct {
	set Settings
	log *slog.Logger
	enc *zstd.Encoder

	next     int64  // next leaf index
	lastSeq  uint64 // last stream sequence archived (or buffered)
	tree     frontier
	prevKey  string
	prevSum  string
	lastCP   []byte
	lastCPAt time.Time

	progress atomic.Pointer[Progress]

	order    tkjs.InOrder
	buf      bytes.Buffer    // lines of the open segment
	buffered int             // how many
	newestAt time.Time       // when the stream stored the newest of them
	pending  []jetstream.Msg // their deliveries, acknowledged once stored (gap fills have none)
	segDay   time.Time
	segAt    time.Time
	first    int64
	firstSq  uint64
}

// Progress is how far the archive has come, for metrics.
type Progress struct {
	Leaves      int64     // in the log
	LastSeq     uint64    // the last stream sequence archived
	CommittedAt time.Time // of the newest segment, by this process (zero before its first)
}

// Progress returns the archive's progress; safe from any goroutine.
func (a *Archiver) Progress() Progress { return *a.progress.Load() }

// NewArchiver loads the archive's state from its newest manifest.
func NewArchiver(ctx context.Context, set Settings) (*Archiver, error) {
	if set.Consumer == "" {
		set.Consumer = "ARCHIVER"
	}
	if set.SegmentBytes <= 0 {
		set.SegmentBytes = 64 << 20
	}
	if set.SegmentAge <= 0 {
		set.SegmentAge = time.Minute
	}
	if set.IdleCheckpoint <= 0 {
		set.IdleCheckpoint = 5 * time.Minute
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	a := &Archiver{set: set, log: set.Logger.With("component", "archiver"), enc: enc}
	if rt, ok := set.Store.(interface {
		RemoveTemp(context.Context) (int, error)
	}); ok && set.Signer != nil {
		if n, err := rt.RemoveTemp(ctx); err != nil {
			return nil, fmt.Errorf("archive: remove temporary files: %w", err)
		} else if n > 0 {
			a.log.Info("removed temporary files that killed writes left", "files", n)
		}
	}
	if err := a.load(ctx); err != nil {
		return nil, err
	}
	// What the archive held at start (lastSeq counts buffered messages
	// later; Progress only committed ones).
	a.progress.Store(&Progress{Leaves: a.next, LastSeq: a.lastSeq})
	return a, nil
}

// load reads the newest manifest, then adopts segments stored after it.
func (a *Archiver) load(ctx context.Context) error {
	keys, err := a.set.Store.List(ctx, "manifest/")
	if err != nil {
		return fmt.Errorf("archive: list manifests: %w", err)
	}
	if len(keys) > 0 {
		key := keys[len(keys)-1]
		b, err := a.set.Store.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("archive: %s: %w", key, err)
		}
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("archive: %s: %w", key, err)
		}
		if a.tree, err = decodeFrontier(m.TreeSize, m.Frontier); err != nil {
			return fmt.Errorf("archive: %s: %w", key, err)
		}
		a.next, a.lastSeq, a.prevKey, a.prevSum = m.LastLeaf+1, m.LastSeq, key, hexSHA256(b)
		if a.set.Signer != nil {
			// Stopped between the manifest and its checkpoint: sign it
			// now (Ed25519 signatures are deterministic, so a checkpoint
			// that is there after all is written again byte for byte).
			if ok, err := HasCheckpoint(ctx, a.set.Store, m.TreeSize); err != nil {
				return fmt.Errorf("archive: %w", err)
			} else if !ok {
				if err := a.checkpoint(ctx); err != nil {
					return err
				}
				a.log.Warn("signed the checkpoint a stop between manifest and checkpoint left out", "tree_size", m.TreeSize)
			}
		}
	}
	segs, err := a.set.Store.List(ctx, "seg/")
	if err != nil {
		return fmt.Errorf("archive: list segments: %w", err)
	}
	for _, key := range segs {
		first, _, ok := segmentRange(key)
		if !ok || first != a.next {
			continue
		}
		if err := a.adopt(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// adopt commits a segment stored by a run that died before its manifest.
func (a *Archiver) adopt(ctx context.Context, key string) error {
	stored, err := a.set.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	content, err := decompress(stored)
	if err != nil {
		return fmt.Errorf("archive: adopt %s: %w", key, err)
	}
	lines := bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'})
	var firstSeq uint64
	for i, line := range lines {
		var l Leaf
		if err := json.Unmarshal(line, &l); err != nil || l.Leaf != a.next+int64(i) {
			return fmt.Errorf("archive: adopt %s: line %d is not leaf %d", key, i+1, a.next+int64(i))
		}
		if i == 0 {
			firstSeq = l.Seq
		}
		a.lastSeq = l.Seq
	}
	a.log.Warn("adopting a segment stored before a crash", "segment", key)
	return a.commit(ctx, key, "", stored, content, lines, firstSeq)
}

// Run archives until ctx ends; what is buffered then is archived before it
// returns.
func (a *Archiver) Run(ctx context.Context) error {
	cons, err := a.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	var failing tkjs.FetchFailures
	for ctx.Err() == nil {
		wait := time.Second
		if a.buf.Len() > 0 {
			wait = max(min(wait, time.Until(a.segAt.Add(a.set.SegmentAge))), 10*time.Millisecond)
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(wait))
		if err == nil {
			for msg := range batch.Messages() {
				if err := a.add(ctx, msg); err != nil {
					if ctx.Err() != nil {
						return nil // stopped mid-write; see below
					}
					return err
				}
			}
			err = batch.Error()
		}
		if err := failing.Note(err); err != nil {
			if ctx.Err() != nil {
				break
			}
			// The consumer is gone (a broker that lost it: JetStream
			// restarted after a full disk) or the fetches keep failing:
			// the runner opens a new archiver, from the newest manifest.
			return fmt.Errorf("archiver: %w", err)
		}
		if err != nil && !tkjs.FetchTimeout(err) {
			if ctx.Err() != nil {
				break
			}
			a.log.Warn("fetch failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if a.buf.Len() > 0 && time.Since(a.segAt) >= a.set.SegmentAge {
			if err := a.flush(ctx); err != nil {
				if ctx.Err() != nil {
					// Stopped mid-write (a fleet handing the role over):
					// a clean stop. The half-committed state in memory is
					// dropped; the next archiver resumes from the newest
					// manifest, as after a crash, and the messages not
					// acknowledged come again.
					return nil
				}
				return err
			}
		}
		if a.lastCP != nil && time.Since(a.lastCPAt) >= a.set.IdleCheckpoint {
			a.publishCheckpoint()
		}
	}
	if a.buf.Len() > 0 {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return a.flush(ctx)
	}
	return nil
}

// open makes the archiver's consumer afresh from the archive's newest
// manifest, not from the consumer's own state: messages a killed run had
// fetched but not acknowledged come at once, not after AckWait.
func (a *Archiver) open(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable: a.set.Consumer, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 10 * time.Minute, MaxAckPending: 500000, DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if a.lastSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, a.lastSeq+1
	}
	if err := a.set.JS.DeleteConsumer(ctx, a.set.Stream, a.set.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("archiver consumer: %w", err)
	}
	cons, err := a.set.JS.CreateConsumer(ctx, a.set.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("archiver consumer: %w", err)
	}
	if err := a.startOrder(ctx); err != nil {
		return nil, err
	}
	return cons, nil
}

// startOrder sets where the archive's next sequence is.
func (a *Archiver) startOrder(ctx context.Context) error {
	stream, err := a.set.JS.Stream(ctx, a.set.Stream)
	if err != nil {
		return fmt.Errorf("archiver: stream %s: %w", a.set.Stream, err)
	}
	a.order = tkjs.InOrder{Stream: stream, Name: a.set.Stream, Next: a.lastSeq + 1}
	if a.lastSeq == 0 {
		// A new archive starts where the stream does (it may have aged
		// messages out before the archive was configured).
		info, err := stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("archiver: stream %s: %w", a.set.Stream, err)
		}
		a.order.Next = max(info.State.FirstSeq, 1)
	}
	return nil
}

// add buffers one message as a leaf; a redelivery of one archived (or
// buffered) already is acknowledged and dropped.
func (a *Archiver) add(ctx context.Context, msg jetstream.Msg) error {
	took, err := a.order.Take(ctx, msg, func(m tkjs.StreamMsg) error { return a.addMsg(ctx, m) })
	if err != nil {
		var gone *tkjs.GoneError
		if errors.As(err, &gone) {
			return fmt.Errorf("archive: %w: the archive would skip it, so the archiver stops", err)
		}
		return err
	}
	if !took {
		// Harmless if it fails: a redelivery comes again and is dropped
		// again.
		if err := msg.Ack(); err != nil {
			a.log.Debug("ack of a redelivery failed", "err", err)
		}
	}
	return nil
}

// addMsg buffers the next stream sequence as a leaf.
func (a *Archiver) addMsg(ctx context.Context, m tkjs.StreamMsg) error {
	if m.Seq != a.lastSeq+1 && a.lastSeq != 0 {
		// InOrder hands on every sequence once, in order; anything else
		// is a bug that must not reach the log.
		return fmt.Errorf("archive: sequence %d after %d", m.Seq, a.lastSeq)
	}
	day := m.Time.UTC().Truncate(24 * time.Hour)
	if a.buf.Len() > 0 && !day.Equal(a.segDay) {
		if err := a.flush(ctx); err != nil {
			return err
		}
	}
	if a.buf.Len() == 0 {
		a.segDay, a.segAt, a.first, a.firstSq = day, time.Now(), a.next, m.Seq
	}
	headers := map[string]string{}
	for k, v := range m.Header {
		if k != "Nats-Msg-Id" && k != "Nats-Expected-Stream" && len(v) > 0 {
			headers[k] = v[0]
		}
	}
	if len(headers) == 0 {
		headers = nil
	}
	line, err := encodeLeaf(Leaf{
		Leaf: a.first + int64(a.buffered), Seq: m.Seq, Time: m.Time.UTC(),
		Subject: m.Subject, MsgID: m.Header.Get("Nats-Msg-Id"), Headers: headers,
	}, m.Data)
	if err != nil {
		return err
	}
	a.buf.Write(line)
	a.buf.WriteByte('\n')
	a.buffered++
	a.newestAt = m.Time
	if m.Msg != nil {
		a.pending = append(a.pending, m.Msg)
	}
	a.lastSeq = m.Seq
	if a.buf.Len() >= a.set.SegmentBytes {
		return a.flush(ctx)
	}
	return nil
}

// flush stores the open segment, commits it and acknowledges its messages.
func (a *Archiver) flush(ctx context.Context) error {
	// The stream's own timestamp: a backlog is archived without waiting,
	// only the newest messages wait out the broker's sync.
	if wait := a.set.Settle - time.Since(a.newestAt); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	content := bytes.Clone(a.buf.Bytes())
	lines := bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'})
	last := a.first + int64(len(lines)) - 1
	key := segmentKey(a.segDay, a.first, last)
	stored := a.enc.EncodeAll(content, nil)
	version, err := a.put(ctx, key, stored)
	if err != nil {
		return err
	}
	if err := a.commit(ctx, key, version, stored, content, lines, a.firstSq); err != nil {
		return err
	}
	for _, m := range a.pending {
		if err := m.Ack(); err != nil {
			a.log.Warn("ack failed; the message will be redelivered and skipped", "err", err)
		}
	}
	a.buf.Reset()
	a.pending, a.buffered = a.pending[:0], 0
	return nil
}

// commit writes the manifest and the checkpoint of a stored segment.
func (a *Archiver) commit(ctx context.Context, segKey, version string, stored, content []byte, lines [][]byte, firstSeq uint64) error {
	first := a.next
	for _, line := range lines {
		a.tree.add(tlog.RecordHash(line))
	}
	root := a.tree.root()
	m := Manifest{
		Version: 1, FirstLeaf: first, LastLeaf: first + int64(len(lines)) - 1, FirstSeq: firstSeq, LastSeq: a.lastSeq,
		Segment: segKey, SegmentSHA256: hexSHA256(stored), ContentSHA256: hexSHA256(content), SegmentVersion: version,
		TreeSize: a.tree.n, RootHash: b64(root), Frontier: a.tree.encode(),
		PrevManifest: a.prevKey, PrevManifestSHA256: a.prevSum,
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	mkey := manifestKey(first)
	if _, err := a.put(ctx, mkey, mb); err != nil {
		return err
	}
	a.next, a.prevKey, a.prevSum = m.LastLeaf+1, mkey, hexSHA256(mb)
	if err := a.checkpoint(ctx); err != nil {
		return err
	}
	a.progress.Store(&Progress{Leaves: a.next, LastSeq: m.LastSeq, CommittedAt: time.Now()})
	a.publishCheckpoint()
	a.log.Info("segment archived", "segment", segKey, "leaves", len(lines), "tree_size", a.tree.n)
	return nil
}

// checkpoint signs and stores the checkpoint of the tree as it is.
func (a *Archiver) checkpoint(ctx context.Context) error {
	cp, err := note.Sign(&note.Note{Text: checkpointText(a.set.Origin, a.tree.n, a.tree.root())}, a.set.Signer)
	if err != nil {
		return err
	}
	if _, err := a.put(ctx, checkpointKey(a.tree.n), cp); err != nil {
		return err
	}
	a.lastCP = cp
	return nil
}

// put stores an object; one that exists with the same bytes (a retry
// after a crash) is fine.
func (a *Archiver) put(ctx context.Context, key string, data []byte) (string, error) {
	v, err := a.set.Store.Put(ctx, key, data)
	if errors.Is(err, ErrExists) {
		if old, gerr := a.set.Store.Get(ctx, key); gerr == nil && bytes.Equal(old, data) {
			return "", nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	return v, nil
}

func (a *Archiver) publishCheckpoint() {
	a.lastCPAt = time.Now()
	if a.set.NC != nil && a.lastCP != nil {
		if err := a.set.NC.Publish(CheckpointSubject, a.lastCP); err != nil {
			a.log.Warn("could not publish the checkpoint", "err", err)
		}
	}
}

// segmentRange reads the leaf range a segment key names.
func segmentRange(key string) (first, last int64, ok bool) {
	base := key[strings.LastIndexByte(key, '/')+1:]
	base = strings.TrimSuffix(base, ".jsonl.zst")
	f, l, found := strings.Cut(base, "-")
	if !found {
		return 0, 0, false
	}
	var err1, err2 error
	first, err1 = parseInt(f)
	last, err2 = parseInt(l)
	return first, last, err1 == nil && err2 == nil && first <= last
}

func decompress(b []byte) ([]byte, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	return dec.DecodeAll(b, nil)
}
