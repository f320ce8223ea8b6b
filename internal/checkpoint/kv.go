package checkpoint

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// KV stores cursors in a JetStream key-value bucket, so they live (and are
// replicated) with the stream they describe. It is the default store, and
// the only one a fleet can share: Claim fences its writers.
type KV struct {
	kv jetstream.KeyValue
}

// KVConfig says how to create the bucket.
type KVConfig struct {
	Bucket    string
	Replicas  int
	Placement tkjs.Placement
	// Apply updates an existing bucket that differs from this config
	// instead of reporting a *jetstream.MismatchError.
	Apply bool
}

// NewKV opens the bucket, creating it if needed.
func NewKV(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KV, error) {
	kv, err := tkjs.EnsureKV(ctx, js, tkjs.KVConfig{
		Bucket: cfg.Bucket, Description: "trailkeeper source cursors",
		Replicas: cfg.Replicas, Placement: cfg.Placement, Apply: cfg.Apply,
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &KV{kv: kv}, nil
}

// Load implements Store.
func (s *KV) Load(ctx context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, errEmptyKey
	}
	e, err := s.kv.Get(ctx, EscapeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load cursor %q: %w", key, err)
	}
	return nonEmpty(e.Value()), nil
}

// nonEmpty is nil for an empty value: a claim of a key never saved writes
// one, and it means "never saved", as a missing key does.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Save implements Store. A PutAck from JetStream means the cursor is
// stored as durably as the stream itself.
func (s *KV) Save(ctx context.Context, key string, cursor []byte) error {
	if key == "" {
		return errEmptyKey
	}
	if _, err := s.kv.Put(ctx, EscapeKey(key), cursor); err != nil {
		return fmt.Errorf("save cursor %q: %w", key, err)
	}
	return nil
}

// ErrFenced says a cursor was written by a newer owner since this one
// claimed it: the writer lost the source (its lease expired while it was
// paused, say) and must stop without saving. Retrying cannot help.
var ErrFenced = errors.New("checkpoint: cursor fenced by a newer owner")

// Claim makes this writer the owner of key's cursor: it rewrites the
// cursor as it is, which moves the key's revision, so that every earlier
// owner's next Save fails with ErrFenced. Call it right after taking the
// source's lease and before loading the cursor; the returned Store serves
// key alone, and each of its saves is a compare-and-set on the revision
// of the one before.
func (s *KV) Claim(ctx context.Context, key string) (*Claimed, error) {
	if key == "" {
		return nil, errEmptyKey
	}
	k := EscapeKey(key)
	for {
		e, err := s.kv.Get(ctx, k)
		var rev uint64
		var cursor []byte
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err = s.kv.Create(ctx, k, nil)
		case err != nil:
		default:
			cursor = nonEmpty(e.Value())
			rev, err = s.kv.Update(ctx, k, e.Value(), e.Revision())
		}
		if tkjs.WrongRevision(err) || errors.Is(err, jetstream.ErrKeyExists) {
			continue // the old owner saved meanwhile: its progress is good, claim it
		}
		if err != nil {
			return nil, fmt.Errorf("claim cursor %q: %w", key, err)
		}
		return &Claimed{kv: s.kv, key: key, k: k, rev: rev, cursor: cursor}, nil
	}
}

// Claimed is one owner's hold on one cursor; see KV.Claim. Its methods are
// called from one goroutine (the stream's pipeline).
type Claimed struct {
	kv     jetstream.KeyValue
	key, k string
	rev    uint64
	cursor []byte
}

// Load implements Store for the claimed key: the cursor as claimed.
func (c *Claimed) Load(_ context.Context, key string) ([]byte, error) {
	if key != c.key {
		return nil, fmt.Errorf("checkpoint: %q is claimed, not %q", c.key, key)
	}
	return c.cursor, nil
}

// Save implements Store for the claimed key; ErrFenced when a newer owner
// claimed it.
func (c *Claimed) Save(ctx context.Context, key string, cursor []byte) error {
	if key != c.key {
		return fmt.Errorf("checkpoint: %q is claimed, not %q", c.key, key)
	}
	rev, err := c.kv.Update(ctx, c.k, cursor, c.rev)
	if tkjs.WrongRevision(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %q", ErrFenced, key)
	}
	if err != nil {
		return fmt.Errorf("save cursor %q: %w", key, err)
	}
	c.rev, c.cursor = rev, cursor
	return nil
}
