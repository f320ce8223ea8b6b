package checkpoint

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KV stores cursors in a JetStream key-value bucket, so they live (and are
// replicated) with the stream they describe. It is the default store.
type KV struct {
	kv jetstream.KeyValue
}

// KVConfig says how to create the bucket.
type KVConfig struct {
	Bucket   string
	Replicas int
}

// NewKV opens the bucket, creating it if needed.
func NewKV(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KV, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "trailkeeper source cursors",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %q: %w", cfg.Bucket, err)
	}
	return &KV{kv: kv}, nil
}

// Load implements Store.
func (s *KV) Load(ctx context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, errEmptyKey
	}
	e, err := s.kv.Get(ctx, escapeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load cursor %q: %w", key, err)
	}
	return e.Value(), nil
}

// Save implements Store. A PutAck from JetStream means the cursor is
// stored as durably as the stream itself.
func (s *KV) Save(ctx context.Context, key string, cursor []byte) error {
	if key == "" {
		return errEmptyKey
	}
	if _, err := s.kv.Put(ctx, escapeKey(key), cursor); err != nil {
		return fmt.Errorf("save cursor %q: %w", key, err)
	}
	return nil
}
