package index

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/tlog"

	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// Follower keeps the index up to date: a durable consumer of the whole
// stream, made afresh at every start from the index's own last sequence
// (the index, not the consumer, knows what it holds, as the archiver's
// manifests do for the archive). Events the stream no longer holds are
// read from the archive; the archive's Merkle tree is kept alongside, so
// that an event's inclusion proof is one query.
type Follower struct {
	Index    *Index
	JS       jetstream.JetStream
	Stream   string
	Consumer string // durable name; default INDEX
	// Archive, if set, back-fills what the stream has aged out and gives
	// every archived change its leaf and proof.
	Archive worm.Store
	// Retention drops changes older than this; 0 keeps everything.
	Retention time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
	// Batch is how many messages one transaction applies (default 1000).
	Batch int
	// FromArchive reads everything the archive holds from there, even
	// what the stream still has (a rebuild that checks the archive).
	FromArchive bool
}

func (f *Follower) defaults() {
	if f.Consumer == "" {
		f.Consumer = "INDEX"
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	if f.Batch <= 0 {
		f.Batch = 1000
	}
}

// Run indexes until ctx ends; it returns nil then, whatever it was doing.
// A failure (a full disk, NATS away) is retried with back-off from the
// index's own last sequence, as after a restart: the index is a view the
// daemon must not stop for.
func (f *Follower) Run(ctx context.Context) error {
	// The pipeline's retry library: exponential, jittered, capped.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = time.Second, 30*time.Second
	b.Reset()
	for {
		started := time.Now()
		err := f.run(ctx, false)
		if ctx.Err() != nil {
			return nil
		}
		var gone *tkjs.GoneError
		if errors.As(err, &gone) {
			// Aged out of the stream before the index read it: start
			// again from the archive (which may hold it) and the stream's
			// new start.
			f.Logger.Error("index: a sequence is gone from the stream before it was indexed; following again from the archive and the stream's first sequence (reindex --from-archive fills what the archive holds)", "err", err)
			continue
		}
		if time.Since(started) > time.Minute {
			b.Reset() // it ran a while: a new failure
		}
		wait := b.NextBackOff()
		f.Logger.Error("index: following failed; retrying from the index's last sequence", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// CatchUp indexes what the stream (and archive) holds now, then returns:
// `trailkeeper reindex`.
func (f *Follower) CatchUp(ctx context.Context) error {
	return f.run(ctx, true)
}

func (f *Follower) run(ctx context.Context, once bool) error {
	f.defaults()
	info, err := f.JS.Stream(ctx, f.Stream)
	if err != nil {
		return fmt.Errorf("index: stream %s: %w", f.Stream, err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		return fmt.Errorf("index: stream %s: %w", f.Stream, err)
	}
	below := si.State.FirstSeq
	if f.FromArchive {
		below = math.MaxUint64
	}
	if err := f.syncArchive(ctx, below); err != nil {
		return err
	}
	last, err := f.Index.LastSeq(ctx)
	if err != nil {
		return err
	}
	cfg := jetstream.ConsumerConfig{
		Durable: f.Consumer, AckPolicy: jetstream.AckAllPolicy, AckWait: 5 * time.Minute,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 4 * f.Batch,
	}
	if last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	if err := f.JS.DeleteConsumer(ctx, f.Stream, f.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("index consumer: %w", err)
	}
	cons, err := f.JS.CreateConsumer(ctx, f.Stream, cfg)
	if err != nil {
		return fmt.Errorf("index consumer: %w", err)
	}
	if once {
		defer f.JS.DeleteConsumer(context.WithoutCancel(ctx), f.Stream, f.Consumer)
	}
	// Every sequence once, in order: a delivery lost in flight (a
	// reconnect) is read from the stream by number before the ones after it.
	order := tkjs.InOrder{Stream: info, Name: f.Stream, Next: max(last+1, si.State.FirstSeq)}
	f.Logger.Info("index following the stream", "from_seq", last+1, "path", f.Index.Path())
	var (
		lastSync, lastPrune, lastOpt time.Time
		applied                      int
		backlog                      bool
	)
	var failing tkjs.FetchFailures
	for ctx.Err() == nil {
		// With a backlog, take what is there now; otherwise wait a
		// while for a full batch.
		var batch jetstream.MessageBatch
		var err error
		if backlog {
			batch, err = cons.FetchNoWait(f.Batch)
		} else {
			batch, err = cons.Fetch(f.Batch, jetstream.FetchMaxWait(time.Second))
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if ferr := failing.Note(err); ferr != nil {
				return fmt.Errorf("index: %w", ferr) // Run makes the consumer afresh
			}
			f.Logger.Warn("index fetch failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		msgs := make([]Msg, 0, f.Batch)
		var lastMsg jetstream.Msg
		pending := uint64(0)
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if _, err := order.Take(ctx, m, func(sm tkjs.StreamMsg) error {
				msgs = append(msgs, Msg{Seq: sm.Seq, Subject: sm.Subject, Data: sm.Data})
				return nil
			}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if len(msgs) > 0 {
					// What came before the gap is indexed first.
					if aerr := f.Index.Apply(ctx, msgs); aerr != nil {
						return aerr
					}
				}
				return err
			}
			lastMsg, pending = m, md.NumPending
		}
		if err := batch.Error(); ctx.Err() == nil {
			if ferr := failing.Note(err); ferr != nil {
				return fmt.Errorf("index: %w", ferr)
			}
			if err != nil && !tkjs.FetchTimeout(err) {
				f.Logger.Warn("index fetch failed", "err", err)
			}
		}
		backlog = len(msgs) > 0 && pending > 0
		if len(msgs) > 0 {
			if err := f.Index.Apply(ctx, msgs); err != nil {
				if ctx.Err() != nil {
					break // stopping: the next start resumes after the index's last seq
				}
				return err // nothing was acked; a restart resumes from the index
			}
			if err := lastMsg.Ack(); err != nil {
				f.Logger.Warn("index ack failed; the next start resumes from the index", "err", err)
			}
			applied += len(msgs)
		}
		now := f.Now()
		if f.Archive != nil && now.Sub(lastSync) > 5*time.Second {
			if err := f.syncArchive(ctx, 0); err != nil {
				f.Logger.Warn("index: reading the archive failed; retried", "err", err)
			}
			lastSync = now
		}
		if f.Retention > 0 && now.Sub(lastPrune) > time.Hour {
			if n, err := f.Index.Prune(ctx, now.Add(-f.Retention)); err != nil {
				f.Logger.Warn("index prune failed", "err", err)
			} else if n > 0 {
				f.Logger.Info("index pruned", "changes", n, "retention", f.Retention)
			}
			lastPrune = now
		}
		if applied > 100000 || (applied > 0 && now.Sub(lastOpt) > time.Hour) {
			_ = f.Index.Optimize(ctx)
			applied, lastOpt = 0, now
		}
		if once && len(msgs) == 0 || once && pending == 0 && len(msgs) > 0 {
			if f.Archive != nil {
				return f.syncArchive(ctx, 0)
			}
			return nil
		}
	}
	return nil
}

// syncArchive reads the archive's segments after the last one read:
// leaves with sequences the index lacks and the stream no longer holds
// (below streamFirst) are indexed from there; every leaf's hashes join
// the stored tree, and the changes it holds learn their leaf. It stops at
// a segment that holds sequences the index has not reached, so that the
// leaf numbers land on rows that exist.
func (f *Follower) syncArchive(ctx context.Context, streamFirst uint64) error {
	if f.Archive == nil {
		return nil
	}
	ix := f.Index
	for {
		n, err := ix.metaInt(ctx, "leaves")
		if err != nil {
			return err
		}
		seg, ok, err := worm.ReadSegment(ctx, f.Archive, n)
		if err != nil || !ok {
			return err
		}
		var msgs []Msg
		seqs := make([]uint64, len(seg.Lines))
		last, err := ix.LastSeq(ctx)
		if err != nil {
			return err
		}
		for i, line := range seg.Lines {
			seq, ok := leafSeq(line)
			if ok {
				seqs[i] = seq
			}
			if !ok || seq > last && seq < streamFirst {
				var l worm.Leaf
				if err := json.Unmarshal(line, &l); err != nil {
					return fmt.Errorf("index: %s line %d: %w", seg.Manifest.Segment, i+1, err)
				}
				seqs[i] = l.Seq
				if l.Seq <= last || l.Seq >= streamFirst {
					continue
				}
				data := []byte(l.Data)
				if l.DataBase64 != "" {
					data, _ = base64.StdEncoding.DecodeString(l.DataBase64)
				}
				msgs = append(msgs, Msg{Seq: l.Seq, Subject: l.Subject, Data: data})
			}
		}
		if len(msgs) > 0 {
			if err := ix.Apply(ctx, msgs); err != nil {
				return err
			}
			f.Logger.Info("index: back-filled from the archive", "segment", seg.Manifest.Segment, "changes", len(msgs))
			last = msgs[len(msgs)-1].Seq
		}
		if seg.Manifest.LastSeq > last {
			return nil // the index has not reached this segment yet
		}
		proved, err := worm.HasCheckpoint(ctx, f.Archive, seg.Manifest.LastLeaf+1)
		if err != nil {
			return err
		}
		if err := ix.addSegment(ctx, seg, seqs, proved); err != nil {
			return err
		}
	}
}

// addSegment stores a segment's tree hashes and leaf numbers.
func (ix *Index) addSegment(ctx context.Context, seg worm.Segment, seqs []uint64, proved bool) error {
	first := seg.Manifest.FirstLeaf
	base := tlog.StoredHashCount(first)
	var pending []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var old []int64
		for i, x := range idx {
			if x >= base {
				out[i] = pending[x-base]
			} else {
				old = append(old, x)
			}
		}
		if len(old) > 0 {
			hs, err := ix.ReadHashes(old)
			if err != nil {
				return nil, err
			}
			j := 0
			for i, x := range idx {
				if x < base {
					out[i] = hs[j]
					j++
				}
			}
		}
		return out, nil
	})
	for i, line := range seg.Lines {
		hs, err := tlog.StoredHashes(first+int64(i), line, hr)
		if err != nil {
			return err
		}
		pending = append(pending, hs...)
	}
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO tree(idx, h) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for i, h := range pending {
		if _, err := ins.ExecContext(ctx, base+int64(i), h[:]); err != nil {
			return fmt.Errorf("index: tree: %w", err)
		}
	}
	contiguous := len(seqs) > 0 && seqs[len(seqs)-1]-seqs[0] == uint64(len(seqs)-1)
	if !contiguous {
		upd, err := tx.PrepareContext(ctx, `UPDATE changes SET leaf = ? WHERE seq = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		for i, s := range seqs {
			if _, err := upd.ExecContext(ctx, first+int64(i), s); err != nil {
				return fmt.Errorf("index: leaf: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO segments(first, last, first_seq, last_seq, contiguous) VALUES (?, ?, ?, ?, ?)`,
		first, seg.Manifest.LastLeaf, seqs[0], seqs[len(seqs)-1], contiguous); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	next := strconv.FormatInt(seg.Manifest.LastLeaf+1, 10)
	if err := ix.setMeta(ctx, tx, "leaves", next); err != nil {
		return err
	}
	if proved {
		if err := ix.setMeta(ctx, tx, "proved", next); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: commit: %w", err)
	}
	return nil
}

// leafSeq reads a leaf line's stream sequence from its fixed prefix
// ({"leaf":N,"seq":S,…}, as the archiver writes it) without decoding the
// event it carries; ok is false for any other shape.
func leafSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"leaf":`))
	if !ok {
		return 0, false
	}
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0, false
	}
	rest, ok = bytes.CutPrefix(rest[i+1:], []byte(`"seq":`))
	if !ok {
		return 0, false
	}
	j := bytes.IndexByte(rest, ',')
	if j < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	return n, err == nil
}

// Prove returns the archive's inclusion proof of an indexed change, read
// from the stored tree and the one segment that holds it.
func (ix *Index) Prove(ctx context.Context, st worm.Store, uid string) (worm.Proof, error) {
	c, err := ix.Change(ctx, uid)
	if err != nil {
		return worm.Proof{}, err
	}
	if c.Leaf == nil {
		return worm.Proof{}, worm.ErrNotArchived
	}
	size, err := ix.metaInt(ctx, "proved")
	if err != nil {
		return worm.Proof{}, err
	}
	line, err := ix.line(ctx, st, *c.Leaf)
	if err != nil {
		return worm.Proof{}, err
	}
	return worm.ProveLeaf(ctx, st, ix, size, *c.Leaf, line)
}

// ArchivedLeaf returns an archived leaf (for an event the stream no
// longer holds).
func (ix *Index) ArchivedLeaf(ctx context.Context, st worm.Store, leaf int64) (worm.Leaf, error) {
	line, err := ix.line(ctx, st, leaf)
	if err != nil {
		return worm.Leaf{}, err
	}
	var l worm.Leaf
	err = json.Unmarshal(line, &l)
	return l, err
}

// line reads one leaf's line from the one segment that holds it.
func (ix *Index) line(ctx context.Context, st worm.Store, leaf int64) ([]byte, error) {
	var first int64
	if err := ix.db.QueryRowContext(ctx, `SELECT first FROM segments WHERE first <= ? ORDER BY first DESC LIMIT 1`, leaf).Scan(&first); err != nil {
		return nil, fmt.Errorf("index: segment of leaf %d: %w", leaf, err)
	}
	seg, ok, err := worm.ReadSegment(ctx, st, first)
	if err != nil {
		return nil, err
	}
	if !ok || leaf > seg.Manifest.LastLeaf {
		return nil, fmt.Errorf("index: the archive has no segment holding leaf %d", leaf)
	}
	return seg.Lines[leaf-first], nil
}
