// Package lease is source ownership across a fleet of daemons: one key per
// source stream in a JetStream KV bucket whose entries expire after the
// lease's TTL. A daemon takes a lease with compare-and-set, renews it well
// inside the TTL, and drops it on shutdown; a lease whose holder died
// expires and another daemon takes it. The lease's revision is its fencing
// token: a holder that was paused past its TTL finds, at its next renewal
// or check, that the revision moved on, and must stop before writing.
//
// This is the primitive of issue 12; spreading sources across daemons and
// fencing cursor saves with it are built on top.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Settings of a lease manager.
type Settings struct {
	Bucket   string        // default trailkeeper-leases
	Holder   string        // this daemon's unique name
	TTL      time.Duration // default 15 s; renew at a third of it
	Replicas int           // of the bucket; default 1
}

// Manager takes and keeps leases for one holder.
type Manager struct {
	kv  jetstream.KeyValue
	set Settings
}

// Errors a lease operation returns.
var (
	// ErrHeld says another live holder has the lease.
	ErrHeld = errors.New("lease: held by another daemon")
	// ErrLost says the lease expired or was taken over: stop the work it
	// guards before anything else is written.
	ErrLost = errors.New("lease: lost")
)

// Open makes (or opens) the bucket. Every daemon of a fleet must use the
// same TTL: it is the bucket's.
func Open(ctx context.Context, js jetstream.JetStream, set Settings) (*Manager, error) {
	if set.Bucket == "" {
		set.Bucket = "trailkeeper-leases"
	}
	if set.TTL <= 0 {
		set.TTL = 15 * time.Second
	}
	if set.Replicas <= 0 {
		set.Replicas = 1
	}
	if set.Holder == "" {
		return nil, errors.New("lease: a holder name is required")
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: set.Bucket, Description: "trailkeeper source leases", History: 1, TTL: set.TTL, Replicas: set.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", set.Bucket, err)
	}
	return &Manager{kv: kv, set: set}, nil
}

// TTL is how long a lease lives without renewal.
func (m *Manager) TTL() time.Duration { return m.set.TTL }

// Lease is one held lease.
type Lease struct {
	Key      string
	Revision uint64 // the fencing token: changes at every renewal
	m        *Manager
}

// Acquire takes the lease on key, or returns ErrHeld. A lease this holder
// already has (a restart faster than the TTL) is taken back.
func (m *Manager) Acquire(ctx context.Context, key string) (*Lease, error) {
	rev, err := m.kv.Create(ctx, key, []byte(m.set.Holder))
	if err == nil {
		return &Lease{Key: key, Revision: rev, m: m}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("lease %s: %w", key, err)
	}
	e, err := m.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return m.Acquire(ctx, key) // expired between the two calls
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", key, err)
	}
	if string(e.Value()) != m.set.Holder {
		return nil, fmt.Errorf("%w: %s holds %s", ErrHeld, e.Value(), key)
	}
	l := &Lease{Key: key, Revision: e.Revision(), m: m}
	if err := l.Renew(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Holder returns who holds key, or "" when nobody does.
func (m *Manager) Holder(ctx context.Context, key string) (string, error) {
	e, err := m.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// Renew extends the lease by a TTL; ErrLost when it expired or another
// holder took it (compare-and-set on the revision).
func (l *Lease) Renew(ctx context.Context) error {
	rev, err := l.m.kv.Update(ctx, l.Key, []byte(l.m.set.Holder), l.Revision)
	if err != nil {
		if isWrongRevision(err) {
			return fmt.Errorf("%w: %s", ErrLost, l.Key)
		}
		return fmt.Errorf("lease %s: renew: %w", l.Key, err)
	}
	l.Revision = rev
	return nil
}

// Check returns nil while the lease is still this holder's at its
// revision: the fence to pass before writing what the lease guards.
func (l *Lease) Check(ctx context.Context) error {
	e, err := l.m.kv.Get(ctx, l.Key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("%w: %s expired", ErrLost, l.Key)
	case err != nil:
		return fmt.Errorf("lease %s: %w", l.Key, err)
	case e.Revision() != l.Revision:
		return fmt.Errorf("%w: %s is now %s's", ErrLost, l.Key, e.Value())
	}
	return nil
}

// Release drops the lease, if it is still this holder's, so that another
// daemon can take it at once.
func (l *Lease) Release(ctx context.Context) error {
	err := l.m.kv.Purge(ctx, l.Key, jetstream.LastRevision(l.Revision))
	if err != nil && !isWrongRevision(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("lease %s: release: %w", l.Key, err)
	}
	return nil
}

// Keep renews the lease every third of its TTL until ctx ends (then it
// releases it) or the lease is lost (then it calls lost and returns). A
// renewal that fails for another reason (NATS unreachable) is retried
// until a TTL has passed since the last good one: by then another daemon
// may hold it, so it is lost too.
func (l *Lease) Keep(ctx context.Context, lost func(error)) {
	t := time.NewTicker(l.m.set.TTL / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = l.Release(rctx)
			cancel()
			return
		case <-t.C:
			err := l.Renew(ctx)
			switch {
			case err == nil:
				last = time.Now()
			case ctx.Err() != nil:
			case errors.Is(err, ErrLost):
				lost(err)
				return
			case time.Since(last) >= l.m.set.TTL:
				lost(fmt.Errorf("%w: %s not renewed for %s: %v", ErrLost, l.Key, l.m.set.TTL, err))
				return
			}
		}
	}
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
