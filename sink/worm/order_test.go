package worm

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/sink"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// deliveries publishes n events to the stream AUDIT and returns them as a
// real consumer delivers them (index i is sequence i+1), unacknowledged.
func deliveries(t *testing.T, js jetstream.JetStream, n int) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	var msgs []sink.Message
	for i := range n {
		msgs = append(msgs, sink.Message{Subject: "audit.aws.123456789012.iam", ID: fmt.Sprintf("aws:evt-%04d", i),
			Header: map[string]string{"Trailkeeper-Source": "test"},
			Data:   fmt.Appendf(nil, `{"metadata":{"uid":"aws:evt-%04d"},"class_uid":6003}`, i)})
	}
	if err := tkjs.NewPublisher(js, "AUDIT").Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "AUDIT", jetstream.ConsumerConfig{Durable: "SCRIPT", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	if len(out) != n {
		t.Fatalf("fetched %d of %d", len(out), n)
	}
	return out
}

func archivedSeqs(t *testing.T, st Store) []uint64 {
	t.Helper()
	var seqs []uint64
	err := ReadLeaves(context.Background(), st, func(l Leaf) error { seqs = append(seqs, l.Seq); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// A consumer that delivers 1, 2, 5, 3, 4 (3 and 4 lost in flight and sent
// again later), then 2 again (a redelivery after a reconnect), then 6–8:
// every sequence is archived once, in order, 3 and 4 read from the stream
// before 5, and every delivery is acknowledged.
func TestArchiverTakesEverySequenceInOrder(t *testing.T) {
	_, nc, js := embednatstest.Start(t)
	ctx := context.Background()
	if _, err := tkjs.EnsureStream(ctx, js, tkjs.StreamConfig{Name: "AUDIT", DuplicateWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ms := deliveries(t, js, 8)
	dir := t.TempDir()
	sig, ver := keys(t)
	a, err := NewArchiver(ctx, Settings{JS: js, NC: nc, Stream: "AUDIT", Store: DirStore{Root: dir}, Signer: sig, Origin: origin, SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.startOrder(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int{1, 2, 5, 3, 4, 2, 6, 7} {
		if err := a.add(ctx, ms[seq-1]); err != nil {
			t.Fatalf("delivery of %d: %v", seq, err)
		}
	}
	if err := a.flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A restart in between: the next archiver resumes after 7.
	a, err = NewArchiver(ctx, Settings{JS: js, NC: nc, Stream: "AUDIT", Store: DirStore{Root: dir}, Signer: sig, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.startOrder(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int{7, 8} {
		if err := a.add(ctx, ms[seq-1]); err != nil {
			t.Fatalf("delivery of %d: %v", seq, err)
		}
	}
	if err := a.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := archivedSeqs(t, DirStore{Root: dir}), []uint64{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Fatalf("archived sequences %v, want %v", got, want)
	}
	if a.order.Filled != 0 {
		t.Errorf("the second archiver filled %d", a.order.Filled)
	}
	r, err := Verify(ctx, DirStore{Root: dir}, VerifyOptions{Verifier: ver})
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %v", err, strs(r.Findings))
	}
	s, _ := js.Stream(ctx, "AUDIT")
	c, _ := s.Consumer(ctx, "SCRIPT")
	if info, err := c.Info(ctx); err != nil || info.NumAckPending != 0 {
		t.Errorf("unacknowledged deliveries: %+v %v", info, err)
	}
}

// A gap the stream cannot fill (the sequence is gone) stops the archiver
// with an error naming it, and nothing after the gap is archived.
func TestArchiverStopsAtAGoneSequence(t *testing.T) {
	_, nc, js := embednatstest.Start(t)
	ctx := context.Background()
	// A stream that allows deletes, to lose a message on purpose.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AUDIT", Subjects: tkjs.Subjects}); err != nil {
		t.Fatal(err)
	}
	ms := deliveries(t, js, 5)
	s, _ := js.Stream(ctx, "AUDIT")
	if err := s.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sig, _ := keys(t)
	a, err := NewArchiver(ctx, Settings{JS: js, NC: nc, Stream: "AUDIT", Store: DirStore{Root: dir}, Signer: sig, Origin: origin, SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.startOrder(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int{1, 2} {
		if err := a.add(ctx, ms[seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	err = a.add(ctx, ms[3])
	var gone *tkjs.GoneError
	if !errors.As(err, &gone) || gone.Seq != 3 {
		t.Fatalf("err = %v, want sequence 3 gone", err)
	}
	if err := a.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := archivedSeqs(t, DirStore{Root: dir}); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("archived %v, want 1 and 2 only", got)
	}
}

// forge rewrites an archive as an operator holding the key could: every
// leaf but those drop names, renumbered, in one segment, with a manifest
// and a checkpoint signed by the real key.
func forge(t *testing.T, from Store, sig note.Signer, drop func(Leaf) bool) string {
	t.Helper()
	ctx := context.Background()
	var lines [][]byte
	var firstSeq, lastSeq uint64
	err := ReadLeaves(ctx, from, func(l Leaf) error {
		if drop(l) {
			return nil
		}
		data := []byte(l.Data)
		if l.DataBase64 != "" {
			data, _ = base64.StdEncoding.DecodeString(l.DataBase64)
		}
		l.Leaf, l.Data, l.DataBase64 = int64(len(lines)), nil, ""
		line, err := encodeLeaf(l, data)
		if err != nil {
			return err
		}
		if len(lines) == 0 {
			firstSeq = l.Seq
		}
		lastSeq = l.Seq
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	a := &Archiver{set: Settings{Store: DirStore{Root: dir}, Signer: sig, Origin: origin}, enc: enc, log: slog.New(slog.DiscardHandler)}
	content := append(bytes.Join(lines, []byte{'\n'}), '\n')
	stored := enc.EncodeAll(content, nil)
	key := segmentKey(time.Unix(1700000000, 0), 0, int64(len(lines)-1))
	if _, err := a.put(ctx, key, stored); err != nil {
		t.Fatal(err)
	}
	a.lastSeq = lastSeq
	if err := a.commit(ctx, key, "", stored, content, lines, firstSeq); err != nil {
		t.Fatal(err)
	}
	return dir
}

// An archive that lost a message can never verify clean, even when whoever
// removed it rebuilt the tree and signed it again with the real key: the
// leaves' stream sequences show the gap. The same forgery with nothing
// removed verifies (so the finding is the gap's, not the forger's).
func TestVerifyFindsAGapInTheSequences(t *testing.T) {
	js, nc := publishEvents(t, 40)
	orig := DirStore{Root: t.TempDir()}
	sig, ver := keys(t)
	archiveStream(t, js, nc, orig, sig, 40)
	ctx := context.Background()

	whole := forge(t, orig, sig, func(Leaf) bool { return false })
	if r, err := Verify(ctx, DirStore{Root: whole}, VerifyOptions{Verifier: ver}); err != nil || !r.OK() {
		t.Fatalf("the faithful rewrite: %v %v", err, strs(r.Findings))
	}
	gap := forge(t, orig, sig, func(l Leaf) bool { return l.Seq == 17 })
	r, err := Verify(ctx, DirStore{Root: gap}, VerifyOptions{Verifier: ver})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 1 || r.Findings[0].Check != "seq-gap" || !strings.Contains(r.Findings[0].Detail, "sequence 18 after 16") {
		t.Fatalf("findings %v, want the one gap after 16", strs(r.Findings))
	}
}

// A checkpoint stored under another size's name, a temporary file a
// killed write left, and a file that is no archive object are findings;
// the archiver removes the temporary file at its next start.
func TestVerifyFindsStraysAndMisnamedCheckpoints(t *testing.T) {
	js, nc := publishEvents(t, 30)
	dir := t.TempDir()
	st := DirStore{Root: dir}
	sig, ver := keys(t)
	archiveStream(t, js, nc, st, sig, 30)
	ctx := context.Background()
	cps, _ := st.List(ctx, "checkpoint/")
	b, _ := st.Get(ctx, cps[len(cps)-1])
	if _, err := st.Put(ctx, checkpointKey(3), b); err != nil {
		t.Fatal(err)
	}
	segs, _ := st.List(ctx, "seg/")
	tmp := segs[0][:strings.LastIndexByte(segs[0], '/')] + "/.tmp-123"
	for _, f := range []string{tmp, "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(f)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Verify(ctx, st, VerifyOptions{Verifier: ver})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Object+" "+f.Check)
	}
	want := []string{checkpointKey(3) + " checkpoint-name", "notes.txt stray-file", tmp + " stray-file"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("findings %v lack %q", got, w)
		}
	}
	if _, err := NewArchiver(ctx, Settings{JS: js, NC: nc, Stream: "AUDIT", Store: st, Signer: sig, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(tmp))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file is still there: %v", err)
	}
}
