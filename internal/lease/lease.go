// Package lease is ownership across a fleet of daemons: one key per owned
// thing (a source stream, a singleton role) in a JetStream KV bucket whose
// entries expire after the lease's TTL. A daemon takes a lease with
// compare-and-set, renews it well inside the TTL, and drops it on
// shutdown; a lease whose holder died expires and another daemon takes it.
//
// Two fences keep an old holder from acting after another took over:
// Valid, a local deadline a safe margin before the server can expire the
// lease (no network call, so a daemon that was paused past it stops before
// it polls again), and the revision, which a holder that was paused finds
// moved at its next renewal. What the lease guards should carry its own
// compare-and-set too (checkpoint.KV.Claim does for cursors), since a
// pause can fall between a check and a write.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Manager takes and keeps leases for one holder.
type Manager struct {
	kv     jetstream.KeyValue
	holder string
	ttl    time.Duration
	now    func() time.Time
}

// Errors a lease operation returns.
var (
	// ErrHeld says another live holder has the lease.
	ErrHeld = errors.New("lease: held by another daemon")
	// ErrLost says the lease expired or was taken over: stop the work it
	// guards before anything else is written.
	ErrLost = errors.New("lease: lost")
)

// New returns a manager of leases in kv, a bucket whose entries expire
// after ttl (the bucket's TTL: the lease's length is the server's).
func New(kv jetstream.KeyValue, holder string, ttl time.Duration) (*Manager, error) {
	if holder == "" {
		return nil, errors.New("lease: a holder name is required")
	}
	if ttl <= 0 {
		return nil, errors.New("lease: a TTL is required")
	}
	return &Manager{kv: kv, holder: holder, ttl: ttl, now: time.Now}, nil
}

// Record is what a lease's entry holds.
type Record struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"` // when this holder took it
}

// Lease is one held lease. Revision and Since are read by the goroutine
// that renews it; Valid is safe from any goroutine.
type Lease struct {
	Key      string
	Revision uint64 // changes at every renewal
	Since    time.Time
	m        *Manager

	mu         sync.Mutex
	validUntil time.Time
}

// margin is how long before the server may expire a lease its holder
// stops trusting it: time to abort the work it guards.
func (m *Manager) margin() time.Duration { return m.ttl / 4 }

func (m *Manager) record(since time.Time) []byte {
	b, _ := json.Marshal(Record{Holder: m.holder, Since: since.UTC()})
	return b
}

// Acquire takes the lease on key, or returns ErrHeld. A lease this holder
// already has is taken back (with a new revision).
func (m *Manager) Acquire(ctx context.Context, key string) (*Lease, error) {
	for {
		sent := m.now()
		rev, err := m.kv.Create(ctx, key, m.record(sent))
		if err == nil {
			l := &Lease{Key: key, Revision: rev, Since: sent, m: m}
			l.extend(sent)
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("lease %s: %w", key, err)
		}
		e, err := m.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released between the two calls
		}
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w", key, err)
		}
		r := decode(e.Value())
		if r.Holder != m.holder {
			return nil, fmt.Errorf("%w: %s holds %s", ErrHeld, r.Holder, key)
		}
		l := &Lease{Key: key, Revision: e.Revision(), Since: r.Since, m: m}
		if err := l.Renew(ctx); err != nil {
			return nil, err
		}
		return l, nil
	}
}

func decode(b []byte) Record {
	var r Record
	if json.Unmarshal(b, &r) != nil {
		r.Holder = string(b) // written by something else: show it as it is
	}
	return r
}

// Entry is a lease as stored.
type Entry struct {
	Record
	Revision uint64
	Renewed  time.Time // its last write
}

// Get returns key's lease, or false when nobody holds it.
func (m *Manager) Get(ctx context.Context, key string) (Entry, bool, error) {
	e, err := m.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	return Entry{Record: decode(e.Value()), Revision: e.Revision(), Renewed: e.Created()}, true, nil
}

// extend moves the local deadline to margin before the server's earliest
// expiry: the server counts the TTL from when it stored the write, which
// is after sent.
func (l *Lease) extend(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.validUntil = sent.Add(l.m.ttl - l.m.margin())
}

// Valid returns nil while the lease is surely still this holder's, by the
// local clock alone; ErrLost from margin before the server may expire it.
func (l *Lease) Valid() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m.now().Before(l.validUntil) {
		return nil
	}
	return fmt.Errorf("%w: %s not renewed in time", ErrLost, l.Key)
}

// expire makes Valid fail from now on.
func (l *Lease) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.validUntil = time.Time{}
}

// Renew extends the lease by a TTL; ErrLost when it expired or another
// holder took it (compare-and-set on the revision).
func (l *Lease) Renew(ctx context.Context) error {
	sent := l.m.now()
	rev, err := l.m.kv.Update(ctx, l.Key, l.m.record(l.Since), l.Revision)
	if err != nil {
		if tkjs.WrongRevision(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
			l.expire()
			return fmt.Errorf("%w: %s", ErrLost, l.Key)
		}
		return fmt.Errorf("lease %s: renew: %w", l.Key, err)
	}
	l.Revision = rev
	l.extend(sent)
	return nil
}

// Release drops the lease, if it is still this holder's, so that another
// daemon can take it at once.
//
// A renewal whose reply was lost (its context ended while it was in
// flight: a stop) moved the revision without this Lease knowing; the entry
// is then read again, and purged at its revision if it still names this
// holder, which is unique to this process.
func (l *Lease) Release(ctx context.Context) error {
	l.expire()
	rev := l.Revision
	for range 2 {
		err := l.m.kv.Purge(ctx, l.Key, jetstream.LastRevision(rev))
		if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if !tkjs.WrongRevision(err) {
			return fmt.Errorf("lease %s: release: %w", l.Key, err)
		}
		e, ok, gerr := l.m.Get(ctx, l.Key)
		if gerr != nil {
			return fmt.Errorf("lease %s: release: %w", l.Key, gerr)
		}
		if !ok || e.Holder != l.m.holder || e.Revision == rev {
			return nil // another holder's now: not ours to drop
		}
		rev = e.Revision
	}
	return nil
}

// Keep renews the lease every quarter of its TTL until ctx ends or the
// lease is lost; then it calls lost (once, with the reason) and returns.
// It does not release the lease: the caller stops the work first. A
// renewal that fails for another reason (NATS unreachable) is retried
// every second while Valid holds; after that the lease is lost, a margin
// before another daemon can take it.
func (l *Lease) Keep(ctx context.Context, lost func(error)) {
	every := l.m.ttl / 4
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A renewal that hangs (NATS paused or partitioned) must not
		// outlive the lease's validity: give up on it then.
		l.mu.Lock()
		rctx, cancel := context.WithDeadline(ctx, l.validUntil)
		l.mu.Unlock()
		err := l.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			t.Reset(every)
			continue
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrLost):
			lost(err)
			return
		}
		if verr := l.Valid(); verr != nil {
			lost(fmt.Errorf("%w (last renewal: %v)", verr, err))
			return
		}
		t.Reset(min(time.Second, every))
	}
}
