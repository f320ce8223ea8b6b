package pipeline

import "sync"

// Wake is a broadcast with no memory: Fire wakes everyone waiting on a
// channel C returned before it. The daemon fires it when NATS reconnects.
type Wake struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewWake returns a Wake.
func NewWake() *Wake { return &Wake{ch: make(chan struct{})} }

// C returns a channel that is closed at the next Fire.
func (w *Wake) C() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// Fire wakes every waiter.
func (w *Wake) Fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.ch)
	w.ch = make(chan struct{})
}
