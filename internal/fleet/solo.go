package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/trailkeeper/trailkeeper/internal/lease"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// soloKey is the lease a daemon outside any fleet holds on a shared
// cluster: two such daemons, or one beside a fleet, would poll every
// source twice.
const soloKey = "solo"

// ErrShared says the cluster is already used by another daemon in a way
// that this one would duplicate.
var ErrShared = errors.New("fleet: another trailkeeper daemon uses this NATS cluster")

// Solo is a daemon without fleet.enabled on a cluster others can reach.
type Solo struct {
	l   *lease.Lease
	m   *lease.Manager
	log *slog.Logger
}

// JoinSolo takes the solo lease, unless fleet members are alive or
// another solo daemon holds it (ErrShared, saying who). set is read as
// for Join (Name, TTL, Bucket, Replicas, Placement).
func JoinSolo(ctx context.Context, set Settings) (*Solo, error) {
	set = defaults(set)
	kv, err := tkjs.EnsureKV(ctx, set.JS, BucketConfig(set.Bucket, set.TTL, set.Replicas, set.Placement, false))
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	ms, err := tkjs.Patiently(ctx, func() ([]memberRecord, error) { return members(ctx, kv) })
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if len(ms) > 0 {
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
		}
		return nil, fmt.Errorf("%w: fleet members %s are alive; set fleet.enabled (and a fleet.name) here too", ErrShared, strings.Join(names, ", "))
	}
	m, err := lease.New(kv, set.Name+"/"+newInstance(), set.TTL)
	if err != nil {
		return nil, err
	}
	// A daemon restarted faster than the TTL finds its old self's lease:
	// wait it out, unless it is renewed (then it is not the old self).
	deadline := time.Now().Add(set.TTL + set.TTL/2)
	var seen uint64
	for {
		l, err := tkjs.Patiently(ctx, func() (*lease.Lease, error) { return m.Acquire(ctx, soloKey) })
		if err == nil {
			return &Solo{l: l, m: m, log: set.Logger}, nil
		}
		if !errors.Is(err, lease.ErrHeld) {
			return nil, err
		}
		e, _, gerr := m.Get(ctx, soloKey)
		name, _, _ := strings.Cut(e.Holder, "/")
		rev := e.Revision
		if gerr != nil || name != set.Name || seen != 0 && rev != seen || time.Now().After(deadline) {
			return nil, fmt.Errorf("%w (%v): run one daemon per cluster, or set fleet.enabled on every daemon", ErrShared, err)
		}
		seen = rev
		set.Logger.Info("the solo lease is held under this daemon's name; waiting to see whether its holder is alive", "ttl", set.TTL)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(set.TTL / 4):
		}
	}
}

// Run keeps the lease until ctx ends, then drops it. A lease lost to a
// NATS outage is taken again when NATS is back; one another daemon took
// meanwhile is ErrShared.
func (s *Solo) Run(ctx context.Context) error {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.l.Release(rctx)
	}()
	for ctx.Err() == nil {
		s.l.Keep(ctx, func(err error) { s.log.Warn("fleet: the solo lease lapsed; taking it again", "err", err) })
		for ctx.Err() == nil {
			l, err := s.m.Acquire(ctx, soloKey)
			if errors.Is(err, lease.ErrHeld) {
				return fmt.Errorf("%w (%v) while this one was cut off: stopping", ErrShared, err)
			}
			if err == nil {
				s.l = l
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// soloHolder returns who holds the solo lease, or "".
func soloHolder(ctx context.Context, m *lease.Manager) (string, error) {
	e, ok, err := m.Get(ctx, soloKey)
	if err != nil || !ok {
		return "", err
	}
	name, _, _ := strings.Cut(e.Holder, "/")
	return name, nil
}
