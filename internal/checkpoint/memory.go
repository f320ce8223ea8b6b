package checkpoint

import (
	"bytes"
	"context"
	"sync"
)

// Memory is a Store for tests; nothing survives the process.
type Memory struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{m: map[string][]byte{}} }

// Load implements Store.
func (s *Memory) Load(_ context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, errEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.m[key]), nil
}

// Save implements Store.
func (s *Memory) Save(_ context.Context, key string, cursor []byte) error {
	if key == "" {
		return errEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = bytes.Clone(cursor)
	return nil
}
