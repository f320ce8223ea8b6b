package index_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const stream = "AUDIT"

func streamEnv(t *testing.T) natsjs.JetStream {
	t.Helper()
	_, _, js := embednatstest.Start(t)
	// The daemon's stream denies purges; this one allows them, to age
	// events out in a test as max_age would.
	if _, err := js.CreateStream(context.Background(), natsjs.StreamConfig{Name: stream, Subjects: jetstream.Subjects, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return js
}

func publish(t *testing.T, js natsjs.JetStream, from, to, n int) {
	t.Helper()
	if err := jetstream.NewPublisher(js, stream).Publish(context.Background(), indextest.Messages(from, to, n)); err != nil {
		t.Fatal(err)
	}
}

// follow runs a follower until stop is called.
func follow(t *testing.T, f *index.Follower) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	return func() { cancel(); wg.Wait() }
}

func waitSeq(t *testing.T, ix *index.Index, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := ix.LastSeq(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index at seq %d, want %d", got, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lastSeq(t *testing.T, js natsjs.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// A follower stopped mid-stream and started again leaves no gap and no
// duplicate: the index holds exactly what a direct build holds.
func TestFollowRestart(t *testing.T) {
	const n = 2000
	js := streamEnv(t)
	publish(t, js, 0, n/2, n)
	path := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	stop := follow(t, &index.Follower{Index: ix, JS: js, Stream: stream, Batch: 50})
	waitSeq(t, ix, 300)
	stop() // somewhere mid-stream
	mid, _ := ix.LastSeq(context.Background())
	ix.Close()
	if mid >= lastSeq(t, js) {
		t.Logf("the follower finished before it was stopped (seq %d); the restart still has the second half", mid)
	}
	publish(t, js, n/2, n, n)
	// The first half again: inside the duplicate window, the stream drops them.
	publish(t, js, 0, 100, n)

	ix, err = index.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	stop = follow(t, &index.Follower{Index: ix, JS: js, Stream: stream, Batch: 50})
	waitSeq(t, ix, lastSeq(t, js))
	stop()
	if got, want := dump(t, ix), dump(t, build(t, n)); got != want {
		t.Errorf("after a restart the index differs from a direct build: %s", firstDiff(got, want))
	}
	// Reindex from the stream alone: the same rows.
	re := open(t)
	if err := (&index.Follower{Index: re, JS: js, Stream: stream, Consumer: "REINDEX"}).CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dump(t, re) != dump(t, ix) {
		t.Errorf("a reindex from the stream differs from the followed index")
	}
}

// When the stream has aged events out, the archive supplies them: a
// rebuild gives the same rows, and every change gets its leaf and a proof
// that checks against the archive's key.
func TestReindexFromArchive(t *testing.T) {
	const n = 1200
	ctx := context.Background()
	js := streamEnv(t)
	publish(t, js, 0, n, n)
	signerKey, verifierKey, err := worm.GenerateKey("index-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := worm.ParseSigner(signerKey)
	verifier, _ := worm.ParseVerifier(verifierKey)
	store := worm.DirStore{Root: t.TempDir()}
	arch, err := worm.NewArchiver(ctx, worm.Settings{JS: js, Stream: stream, Store: store, Signer: signer, Origin: signer.Name(),
		SegmentBytes: 64 << 10, SegmentAge: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = arch.Run(actx) })
	last := lastSeq(t, js)
	deadline := time.Now().Add(60 * time.Second)
	tail := &worm.Tail{Store: store}
	for tail.LastSeq < last {
		if err := tail.Update(ctx); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the archiver did not catch up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	followed := open(t)
	if err := (&index.Follower{Index: followed, JS: js, Stream: stream, Archive: store}).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The stream forgets its first 800 messages.
	s, _ := js.Stream(ctx, stream)
	if err := s.Purge(ctx, natsjs.WithPurgeSequence(801)); err != nil {
		t.Fatal(err)
	}
	rebuilt := open(t)
	if err := (&index.Follower{Index: rebuilt, JS: js, Stream: stream, Archive: store, Consumer: "REINDEX"}).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, rebuilt), dump(t, followed); got != want {
		t.Errorf("the index rebuilt from archive and stream differs from the one followed: %s", firstDiff(got, want))
	}
	if st, _ := rebuilt.Stats(ctx); st.Changes != n {
		t.Errorf("rebuilt index holds %d changes, want %d", st.Changes, n)
	}
	for _, i := range []int{0, 799, 1199} {
		c := indextest.At(i, n)
		got, err := rebuilt.Change(ctx, c.UID)
		if err != nil || got.Leaf == nil {
			t.Fatalf("change %d: %v, leaf %v", i, err, got.Leaf)
		}
		p, err := rebuilt.Prove(ctx, store, c.UID)
		if err != nil {
			t.Fatalf("prove %d: %v", i, err)
		}
		if err := worm.CheckProof(p, verifier, ""); err != nil {
			t.Errorf("proof of change %d: %v", i, err)
		}
		leaf, err := rebuilt.ArchivedLeaf(ctx, store, *got.Leaf)
		if err != nil || leaf.MsgID != c.UID {
			t.Errorf("archived leaf of change %d: %v %q", i, err, leaf.MsgID)
		}
	}
	if _, err := rebuilt.Prove(ctx, store, "nope"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("proof of an unknown uid: %v", err)
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return "line " + strconv.Itoa(i) + ":\n" + al[i] + "\n" + bl[i]
		}
	}
	return "lengths " + strconv.Itoa(len(al)) + " " + strconv.Itoa(len(bl))
}
