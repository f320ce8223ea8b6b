// Package httpapitest serves the query API and the web page over a real
// stack: an embedded JetStream stream holding a synthetic corpus, the
// archive of that stream, the index following both, and a run registry
// with a planned run. The API's, the CLI's and the browser's tests use it.
package httpapitest

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// Env is a served corpus.
type Env struct {
	URL      string
	Token    string // "" when the env is open
	N        int    // changes in the corpus
	Index    *index.Index
	Archive  worm.Store
	Verifier note.Verifier
	// VerifierKey is the verifier key's text (for verify --key).
	VerifierKey string
	Query       *httpapi.Query
	// RunKey names the registered run with a plan: its planned resources
	// are Planned; its other changes are out of plan.
	RunKey  string
	Planned []string
}

// Now is the env's clock: a day after the corpus's last change.
func Now(n int) time.Time { return indextest.Start.Add(time.Duration(n)*time.Second + 24*time.Hour) }

// Start serves a corpus of n changes; token, if set, guards it.
func Start(t testing.TB, n int, token string) *Env {
	t.Helper()
	ctx := context.Background()
	_, _, js := embednatstest.Start(t)
	stream, err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{Name: "AUDIT", DuplicateWindow: time.Hour, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := jetstream.NewPublisher(js, "AUDIT").Publish(ctx, indextest.Messages(0, n, n)); err != nil {
		t.Fatal(err)
	}
	signerKey, verifierKey, err := worm.GenerateKey("httpapitest")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := worm.ParseSigner(signerKey)
	verifier, _ := worm.ParseVerifier(verifierKey)
	store := worm.DirStore{Root: t.TempDir()}
	archive(t, js, store, signer)

	ix, err := index.Open(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	if err := (&index.Follower{Index: ix, JS: js, Stream: "AUDIT", Archive: store}).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}

	runs, err := correlate.OpenRegistry(ctx, js, "runs")
	if err != nil {
		t.Fatal(err)
	}
	// Run 1's plan lists the resources of its first three changes.
	env := &Env{Token: token, N: n, Index: ix, Archive: store, Verifier: verifier, VerifierKey: verifierKey, RunKey: "gh:org/infra:1"}
	var plan []correlate.Change
	for i := 1000; i < 1030 && i < n; i += 10 {
		c := indextest.At(i, n)
		env.Planned = append(env.Planned, c.Resource)
		plan = append(plan, correlate.Change{Address: "aws_instance.web[" + c.Name + "]", Actions: []string{"update"}, IDs: []string{c.Resource}})
	}
	plan = append(plan, correlate.Change{Address: "aws_instance.never", Actions: []string{"create"}, IDs: []string{"i-neverapplied"}})
	fin := indextest.Start.Add(1100 * time.Second)
	if err := runs.Put(ctx, correlate.Run{Key: env.RunKey, Tool: "terraform", Orchestrator: "github", StartedAt: indextest.Start.Add(999 * time.Second),
		FinishedAt: &fin, Status: "succeeded", Actor: "octocat", Commit: "0123456789abcdef", Scope: correlate.Scope{Repo: "org/infra", Workspace: "prod"},
		Plan: plan}); err != nil {
		t.Fatal(err)
	}
	env.Query = &httpapi.Query{Index: ix, Runs: runs, Events: stream, Archive: store, Token: token, Now: func() time.Time { return Now(n) }}
	srv := httptest.NewServer(httpapi.Handler(prometheus.NewRegistry(), func() ([]string, error) { return nil, nil }, "", env.Query.Routes()...))
	t.Cleanup(srv.Close)
	env.URL = srv.URL
	return env
}

// archive runs the archiver until it has archived the whole stream.
func archive(t testing.TB, js natsjs.JetStream, store worm.Store, signer note.Signer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := worm.NewArchiver(ctx, worm.Settings{JS: js, Stream: "AUDIT", Store: store, Signer: signer, Origin: signer.Name(),
		SegmentBytes: 256 << 10, SegmentAge: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = a.Run(ctx) })
	s, err := js.Stream(ctx, "AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	tail := &worm.Tail{Store: store}
	for {
		if err := tail.Update(ctx); err != nil {
			t.Fatal(err)
		}
		last := tail.LastSeq
		if last >= info.State.LastSeq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("archived up to seq %d of %d", last, info.State.LastSeq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
