package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The same contract, run against every store.
func TestStores(t *testing.T) {
	ctx := context.Background()
	stores := map[string]func(t *testing.T) Store{
		"memory": func(*testing.T) Store { return NewMemory() },
		"file": func(t *testing.T) Store {
			s, err := NewFile(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"kv": func(t *testing.T) Store {
			_, _, js := embednatstest.Start(t)
			s, err := NewKV(ctx, js, KVConfig{Bucket: "cursors"})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	keys := []string{"samples", "aws/123456789012/us-east-1", "gcp:projects/p.1", ".lead", "trail.", "a..b", "ü space=%"}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for _, k := range keys {
				got, err := s.Load(ctx, k)
				if err != nil || got != nil {
					t.Fatalf("Load(%q) of a new key = %q, %v; want nil, nil", k, got, err)
				}
			}
			for i, k := range keys {
				if err := s.Save(ctx, k, []byte("v1-"+k)); err != nil {
					t.Fatalf("Save(%q): %v", k, err)
				}
				if err := s.Save(ctx, k, []byte{byte('0' + i)}); err != nil {
					t.Fatalf("Save(%q) again: %v", k, err)
				}
			}
			for i, k := range keys {
				got, err := s.Load(ctx, k)
				if err != nil || string(got) != string([]byte{byte('0' + i)}) {
					t.Errorf("Load(%q) = %q, %v", k, got, err)
				}
			}
			if _, err := s.Load(ctx, ""); err == nil {
				t.Error("empty key accepted")
			}
			// Concurrent saves of different keys.
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					k := "c" + string(rune('a'+i))
					if err := s.Save(ctx, k, []byte(k)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestFileStoreLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.Save(context.Background(), "k", []byte(strings.Repeat("x", i))); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "k.cursor" {
		t.Errorf("folder holds %v", ents)
	}
	// A reopened store reads what the last one saved.
	s2, _ := NewFile(dir)
	got, _ := s2.Load(context.Background(), "k")
	if len(got) != 19 {
		t.Errorf("reopened: %q", got)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "k.cursor"))
	if string(b) != string(got) {
		t.Error("file and Load disagree")
	}
}

func TestEscapeKey(t *testing.T) {
	seen := map[string]string{}
	for _, k := range []string{"a", "a=", "a=3D", "a/b", "a_b", "a.b", ".a", "a.", "a..b", "é"} {
		e := EscapeKey(k)
		for _, c := range e {
			if !strings.ContainsRune("-_.=", c) && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				t.Errorf("EscapeKey(%q) = %q holds %q", k, e, c)
			}
		}
		if strings.HasPrefix(e, ".") || strings.HasSuffix(e, ".") || strings.Contains(e, "..") {
			t.Errorf("EscapeKey(%q) = %q is not a valid KV key", k, e)
		}
		if prev, dup := seen[e]; dup {
			t.Errorf("%q and %q both escape to %q", prev, k, e)
		}
		seen[e] = k
	}
}

// A claim fences every earlier owner: a paused old owner that wakes and
// saves the cursor it had gets ErrFenced, and the new owner's progress
// stands.
func TestClaimFencesOlderOwner(t *testing.T) {
	ctx := context.Background()
	_, _, js := embednatstest.Start(t)
	s, err := NewKV(ctx, js, KVConfig{Bucket: "cursors"})
	if err != nil {
		t.Fatal(err)
	}
	const key = "aws/123456789012/us-east-1"
	a, err := s.Claim(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := a.Load(ctx, key); c != nil {
		t.Fatalf("a new key's claimed cursor = %q, want nil", c)
	}
	if c, _ := s.Load(ctx, key); c != nil {
		t.Fatalf("a claimed, never saved key loads %q, want nil", c)
	}
	if err := a.Save(ctx, key, []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, key, []byte("a2")); err != nil {
		t.Fatal(err)
	}
	b, err := s.Claim(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := b.Load(ctx, key); string(c) != "a2" {
		t.Fatalf("b claimed %q, want a's last save a2", c)
	}
	if err := a.Save(ctx, key, []byte("a1-stale")); !errors.Is(err, ErrFenced) {
		t.Fatalf("the old owner's save = %v, want ErrFenced", err)
	}
	if err := b.Save(ctx, key, []byte("b1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, key, []byte("a1-stale")); !errors.Is(err, ErrFenced) {
		t.Fatalf("the old owner's save = %v, want ErrFenced", err)
	}
	if c, _ := s.Load(ctx, key); string(c) != "b1" {
		t.Fatalf("cursor = %q, want b1", c)
	}
	if _, err := b.Load(ctx, "other"); err == nil {
		t.Error("a claim served another key")
	}
}
