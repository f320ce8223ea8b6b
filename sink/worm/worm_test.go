package worm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/sink"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const origin = "trailkeeper.test/archive"

func keys(t testing.TB) (note.Signer, note.Verifier) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return s, v
}

func TestFrontierMatchesTlog(t *testing.T) {
	var f frontier
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for n := int64(0); n < 70; n++ {
		data := []byte(fmt.Sprint("leaf ", n))
		hs, err := tlog.StoredHashes(n, data, hr)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		f.add(tlog.RecordHash(data))
		want, err := tlog.TreeHash(n+1, hr)
		if err != nil {
			t.Fatal(err)
		}
		if f.root() != want {
			t.Fatalf("tree of %d: frontier root differs from tlog's", n+1)
		}
		if g, err := decodeFrontier(f.n, f.encode()); err != nil || g.root() != want {
			t.Fatalf("frontier round trip at %d: %v", n+1, err)
		}
	}
}

// archiveMessages publishes n events and a dead letter to a fresh stream,
// archives them all into a new directory, and returns it.
func archiveMessages(t *testing.T, n int) (string, note.Verifier) {
	dir := t.TempDir()
	ver := archiveInto(t, n, DirStore{Root: dir})
	return dir, ver
}

// archiveInto publishes n events and a dead letter to a fresh stream and
// archives them all into st.
func archiveInto(t *testing.T, n int, st Store) note.Verifier {
	js, nc := publishEvents(t, n)
	sig, ver := keys(t)
	archiveStream(t, js, nc, st, sig, n)
	return ver
}

// publishEvents publishes n events and a dead letter to a fresh stream.
func publishEvents(t *testing.T, n int) (jetstream.JetStream, *nats.Conn) {
	_, nc, js := embednatstest.Start(t)
	ctx := context.Background()
	if _, err := tkjs.EnsureStream(ctx, js, tkjs.StreamConfig{Name: "AUDIT", DuplicateWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var msgs []sink.Message
	for i := range n {
		msgs = append(msgs, sink.Message{Subject: "audit.aws.123456789012.iam", ID: fmt.Sprintf("aws:evt-%04d", i),
			Data: fmt.Appendf(nil, `{"metadata":{"uid":"aws:evt-%04d"},"class_uid":6003,"time":%d}`, i, 1700000000000+i)})
	}
	msgs = append(msgs, sink.Message{Subject: "audit.deadletter.aws", ID: "deadletter:1", Header: map[string]string{"Trailkeeper-Error": "not JSON"}, Data: []byte{0xff, 0x00, 'x'}})
	if err := tkjs.NewPublisher(js, "AUDIT").Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	return js, nc
}

// archiveStream archives the stream archiveInto published into st.
func archiveStream(t *testing.T, js jetstream.JetStream, nc *nats.Conn, st Store, sig note.Signer, n int) {
	t.Helper()
	runArchiver(t, js, nc, st, sig, uint64(n+1))
}

// runArchiver archives until the archive holds want stream messages.
func runArchiver(t *testing.T, js jetstream.JetStream, nc *nats.Conn, st Store, sig note.Signer, want uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := NewArchiver(ctx, Settings{JS: js, NC: nc, Stream: "AUDIT", Store: st, Signer: sig, Origin: origin,
		SegmentBytes: 4096, SegmentAge: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Progress moves only once a segment's manifest *and* checkpoint are
	// stored; the newest manifest alone is not enough (stopping between
	// the two leaves the tail without its checkpoint).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if a.Progress().LastSeq >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("archive never caught up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestArchiveVerifies(t *testing.T) {
	dir, ver := archiveMessages(t, 120)
	r, err := Verify(context.Background(), DirStore{Root: dir}, VerifyOptions{Verifier: ver})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Leaves != 121 || r.Segments < 3 || r.TreeSize != 121 {
		t.Fatalf("report %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoint")); err != nil {
		t.Fatal(err)
	}
}

func TestProve(t *testing.T) {
	dir, ver := archiveMessages(t, 70)
	st := DirStore{Root: dir}
	p, err := Prove(context.Background(), st, "aws:evt-0042")
	if err != nil {
		t.Fatal(err)
	}
	if p.Leaf != 42 || !strings.Contains(p.Line, `"uid":"aws:evt-0042"`) {
		t.Fatalf("proof of leaf %d: %s", p.Leaf, p.Line)
	}
	if err := CheckProof(p, ver, ""); err != nil {
		t.Fatalf("a true proof fails: %v", err)
	}
	forged := p
	forged.Line = strings.Replace(p.Line, "6003", "6004", 1)
	if err := CheckProof(forged, ver, ""); err == nil {
		t.Error("a changed event passed its proof")
	}
	_, other := keys(t)
	if err := CheckProof(p, other, origin); err == nil {
		t.Error("a proof passed under another key")
	}
	if _, err := Prove(context.Background(), st, "nope"); !errors.Is(err, ErrNotArchived) {
		t.Errorf("unknown uid: %v", err)
	}
}

// The spliced line is byte for byte what encoding/json writes for the
// whole leaf (the archive's format is those bytes).
func FuzzEncodeLeaf(f *testing.F) {
	for _, data := range []string{`{"a": 1, "b": [1, 2, {"c": "<&>\u2028"}]}`, `{}`, ` [1] `, `"s"`, `not json`, ``, `{"a":`, "\x00\xff",
		`{"a":"x y\" z","b":[1,{"c":"\\"}]}`, `{"a":"\\"} `, "{\"a\":\"\xff\"}", `{"a":1,"a":2}`} {
		f.Add([]byte(data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l := Leaf{Leaf: 7, Seq: 9, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Subject: "audit.aws.1.iam", MsgID: "aws:x<y>", Headers: map[string]string{"b": "2", "a": "&"}}
		got, err := encodeLeaf(l, data)
		if err != nil {
			t.Fatal(err)
		}
		want := l
		var c bytes.Buffer
		if len(bytes.TrimSpace(data)) > 0 && json.Compact(&c, data) == nil {
			want.Data = c.Bytes()
		} else {
			want.DataBase64 = base64.StdEncoding.EncodeToString(data)
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(want); err != nil {
			t.Fatal(err)
		}
		if string(got) != strings.TrimSuffix(b.String(), "\n") {
			t.Errorf("data %q:\n got %s\nwant %s", data, got, b.String())
		}
	})
}
