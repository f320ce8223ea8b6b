// Package fleet runs several daemons as one: every unit of work (a source
// stream, a singleton role such as the archiver) is owned by exactly one
// live member at a time, through a lease (internal/lease) in a JetStream
// KV bucket that also holds each member's heartbeat.
//
// Every member computes the same assignment from the same inputs: the
// live members and the units each can run (its config). Units go to their
// highest-ranked member by rendezvous hashing, bounded so that no member
// has more than its even share (consistent hashing with bounded loads).
// A member starts what is assigned to it once it holds the lease, and
// hands over what is not (the unit stops gracefully, its cursor is saved,
// then the lease is dropped). The assignment changes only when members
// join or leave, so it does not flap; one that leaves without a word has
// its leases expire after a TTL, and the others take its units.
package fleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/lease"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Settings of a member.
type Settings struct {
	JS jetstream.JetStream
	// Name is the member's name: unique in the fleet, stable across
	// restarts (the host name, say).
	Name string
	// TTL of leases and heartbeats; every member must use the same (it is
	// the bucket's). Default 15 s.
	TTL       time.Duration
	Bucket    string // default trailkeeper-fleet
	Replicas  int
	Placement tkjs.Placement
	// HTTP is the address others can reach this member's API on, for
	// the status.
	HTTP    string
	Version string
	Logger  *slog.Logger
	// Progress, if set, tells how far a running unit got, for the status.
	Progress func(key string) Progress
}

// Progress is how far a unit got.
type Progress struct {
	Newest time.Time `json:"newest,omitzero"` // newest event published
	Saved  time.Time `json:"saved,omitzero"`  // cursor last saved
}

// Unit is one piece of work the fleet owns once.
type Unit struct {
	// Key is unique in the fleet and the same on every member that can
	// run the unit: a stream's cursor key, or "role/<name>".
	Key string
	// Source names the configured source (or the role), for the status.
	Source string
	// Run does the work while this member holds the unit's lease. Its
	// context ends when the unit moves to another member or the daemon
	// stops: finish the work in hand (bounded) and return. It also ends
	// when the lease is lost, and then l.Valid already fails: stop without
	// writing anything. Any return ends this run; the unit starts again
	// later if it is still assigned here (an error is logged, and the
	// restart is delayed).
	Run func(ctx context.Context, l *lease.Lease) error
}

// DefaultBucket holds leases and heartbeats.
const DefaultBucket = "trailkeeper-fleet"

// Keys in the bucket.
const (
	memberPrefix = "member."
	leasePrefix  = "lease."
)

// LeaseKey is the bucket key of a unit's lease.
func LeaseKey(unit string) string { return leasePrefix + checkpoint.EscapeKey(unit) }

// ErrDuplicate says another live daemon has this member's name.
var ErrDuplicate = errors.New("fleet: another live daemon has this name")

// memberRecord is a member's heartbeat.
type memberRecord struct {
	Name     string              `json:"name"`
	Instance string              `json:"instance"` // this process
	Started  time.Time           `json:"started"`
	HTTP     string              `json:"http,omitempty"`
	Version  string              `json:"version,omitempty"`
	Units    []string            `json:"units"` // what it can run
	Sources  map[string]string   `json:"sources,omitempty"`
	Progress map[string]Progress `json:"progress,omitempty"` // of what it runs
	beat     time.Time           // the entry's time
}

func (r memberRecord) holder() string { return r.Name + "/" + r.Instance }

// Member is this daemon in the fleet.
type Member struct {
	set    Settings
	kv     jetstream.KeyValue
	leases *lease.Manager
	log    *slog.Logger
	rec    memberRecord
	rev    uint64

	mu      sync.Mutex
	running map[string]*running
	retry   map[string]retryState
}

type running struct {
	l      *lease.Lease
	cancel context.CancelFunc
	done   chan struct{}
}

type retryState struct {
	n     int
	after time.Time
}

// Join opens (or creates) the fleet's bucket and registers this member.
// A member of the same name that is still alive is ErrDuplicate; one that
// died is waited out (at most a TTL).
func Join(ctx context.Context, set Settings) (*Member, error) {
	if set.Name == "" {
		return nil, errors.New("fleet: a member name is required")
	}
	set = defaults(set)
	kv, err := tkjs.EnsureKV(ctx, set.JS, BucketConfig(set.Bucket, set.TTL, set.Replicas, set.Placement, false))
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	m := &Member{set: set, kv: kv, log: set.Logger.With("member", set.Name),
		rec:     memberRecord{Name: set.Name, Instance: newInstance(), Started: time.Now().UTC(), HTTP: set.HTTP, Version: set.Version},
		running: map[string]*running{}, retry: map[string]retryState{}}
	if m.leases, err = lease.New(kv, m.rec.holder(), set.TTL); err != nil {
		return nil, err
	}
	// A new replicated bucket may not answer until its leader is elected.
	h, err := tkjs.Patiently(ctx, func() (string, error) { return soloHolder(ctx, m.leases) })
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if h != "" {
		return nil, fmt.Errorf("%w: %s runs without fleet.enabled; enable it there too (and give each daemon a fleet.name)", ErrShared, h)
	}
	if _, err := tkjs.Patiently(ctx, func() (struct{}, error) { return struct{}{}, m.register(ctx) }); err != nil {
		return nil, err
	}
	return m, nil
}

func defaults(set Settings) Settings {
	if set.TTL <= 0 {
		set.TTL = 15 * time.Second
	}
	if set.Bucket == "" {
		set.Bucket = DefaultBucket
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	return set
}

// newInstance names this process among daemons of one name.
func newInstance() string {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	return hex.EncodeToString(id)
}

// BucketConfig is the fleet's bucket: entries expire after ttl.
func BucketConfig(bucket string, ttl time.Duration, replicas int, pl tkjs.Placement, apply bool) tkjs.KVConfig {
	return tkjs.KVConfig{Bucket: bucket, Description: "trailkeeper fleet: members and leases", TTL: ttl,
		Replicas: replicas, Placement: pl, Apply: apply}
}

// SetHTTP sets the API address others see in the status (known once the
// daemon listens).
func (m *Member) SetHTTP(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rec.HTTP = addr
}

// KV is the fleet's bucket.
func (m *Member) KV() jetstream.KeyValue { return m.kv }

// register creates the member's key, waiting out a dead predecessor of
// the same name: its entry is either renewed (a live duplicate) or
// expires within a TTL.
func (m *Member) register(ctx context.Context) error {
	key := memberPrefix + checkpoint.EscapeKey(m.set.Name)
	deadline := time.Now().Add(m.set.TTL + m.set.TTL/2)
	var seen uint64
	for {
		rev, err := m.kv.Create(ctx, key, m.encode())
		if err == nil {
			m.rev = rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("fleet: register %s: %w", m.set.Name, err)
		}
		e, err := m.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue
		case err != nil:
			return fmt.Errorf("fleet: register %s: %w", m.set.Name, err)
		case seen != 0 && e.Revision() != seen:
			var r memberRecord
			_ = json.Unmarshal(e.Value(), &r)
			return fmt.Errorf("%w: %s (started %s, http %s) is renewing it; give each daemon its own fleet.name",
				ErrDuplicate, m.set.Name, r.Started.Format(time.RFC3339), r.HTTP)
		case time.Now().After(deadline):
			return fmt.Errorf("fleet: register %s: its old entry neither expired nor was renewed", m.set.Name)
		}
		seen = e.Revision()
		if seen == 0 {
			seen = 1
		}
		m.log.Info("a member of this name was registered; waiting to see whether it is alive", "ttl", m.set.TTL)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.set.TTL / 4):
		}
	}
}

func (m *Member) encode() []byte {
	b, _ := json.Marshal(m.rec)
	return b
}

// heartbeat renews the member's entry with its progress. A write that
// finds the entry changed by someone else means a duplicate name.
func (m *Member) heartbeat(ctx context.Context) error {
	key := memberPrefix + checkpoint.EscapeKey(m.set.Name)
	m.mu.Lock()
	if m.set.Progress != nil {
		m.rec.Progress = map[string]Progress{}
		for k := range m.running {
			m.rec.Progress[k] = m.set.Progress(k)
		}
	}
	data := m.encode()
	m.mu.Unlock()
	for range 3 {
		rev, err := m.kv.Update(ctx, key, data, m.rev)
		if err == nil {
			m.rev = rev
			return nil
		}
		if !tkjs.WrongRevision(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		e, err := m.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Our entry expired (we were paused or cut off): join again.
			rev, err := m.kv.Create(ctx, key, data)
			if err == nil {
				m.rev = rev
				return nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
		case err != nil:
			return err
		default:
			var r memberRecord
			if json.Unmarshal(e.Value(), &r) != nil || r.Instance != m.rec.Instance {
				return fmt.Errorf("%w: %s (started %s, http %s) wrote its heartbeat; give each daemon its own fleet.name",
					ErrDuplicate, m.set.Name, r.Started.Format(time.RFC3339), r.HTTP)
			}
			m.rev = e.Revision() // our last update landed although its reply was lost
		}
	}
	return fmt.Errorf("fleet: heartbeat of %s keeps racing", m.set.Name)
}

// members reads every live member's heartbeat.
func members(ctx context.Context, kv jetstream.KeyValue) ([]memberRecord, error) {
	var out []memberRecord
	err := snapshot(ctx, kv, []string{memberPrefix}, func(e jetstream.KeyValueEntry) {
		if r, ok := decodeMember(e); ok {
			out = append(out, r)
		}
	})
	sortMembers(out)
	return out, err
}

func decodeMember(e jetstream.KeyValueEntry) (memberRecord, bool) {
	var r memberRecord
	if json.Unmarshal(e.Value(), &r) != nil || r.Name == "" {
		return r, false
	}
	r.beat = e.Created()
	return r, true
}

func sortMembers(ms []memberRecord) {
	slices.SortFunc(ms, func(a, b memberRecord) int { return cmp.Compare(a.Name, b.Name) })
}

// snapshot calls fn with the current entry of every key under the
// prefixes (one watcher, no per-key reads: on a replicated bucket each
// watcher is a consumer the cluster has to create).
func snapshot(ctx context.Context, kv jetstream.KeyValue, prefixes []string, fn func(jetstream.KeyValueEntry)) error {
	filters := make([]string, len(prefixes))
	for i, p := range prefixes {
		filters[i] = p + ">"
	}
	w, err := kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("fleet: watch closed")
			}
			if e == nil {
				return nil
			}
			fn(e)
		}
	}
}

// Assign is the assignment every member computes: unit key → member name.
// Each unit goes to the member that ranks highest for it (rendezvous
// hashing) among those that can run it and are under their share (units
// / members, and one more for as many members as the division leaves
// over); when all of those are full, to the least loaded.
// Units are placed in an order of their own hashes, so that no member is
// favoured by key order.
func Assign(can map[string][]string) map[string]string {
	names := make([]string, 0, len(can))
	unitSet := map[string][]string{} // unit → members that can run it
	for name, units := range can {
		names = append(names, name)
		for _, u := range units {
			unitSet[u] = append(unitSet[u], name)
		}
	}
	out := map[string]string{}
	if len(names) == 0 {
		return out
	}
	units := make([]string, 0, len(unitSet))
	for u := range unitSet {
		units = append(units, u)
	}
	slices.SortFunc(units, func(a, b string) int {
		return cmp.Or(cmp.Compare(hash(a), hash(b)), cmp.Compare(a, b))
	})
	// Exactly even: every member gets floor(units/members), and the first
	// units%members members to reach it may take one more.
	floor, extra := len(units)/len(names), len(units)%len(names)
	load := map[string]int{}
	for _, u := range units {
		cands := unitSet[u]
		slices.SortFunc(cands, func(a, b string) int {
			return cmp.Or(cmp.Compare(hash(b+"\x00"+u), hash(a+"\x00"+u)), cmp.Compare(a, b))
		})
		pick := ""
		for _, c := range cands {
			if load[c] < floor || load[c] == floor && extra > 0 {
				pick = c
				break
			}
		}
		if pick == "" {
			pick = cands[0]
			for _, c := range cands[1:] {
				if load[c] < load[pick] {
					pick = c
				}
			}
		}
		if load[pick] == floor && extra > 0 {
			extra--
		}
		load[pick]++
		out[u] = pick
	}
	return out
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Run runs the units assigned to this member until ctx ends, then stops
// them (each finishes the work in hand), drops their leases and leaves
// the fleet. It returns an error only when this member cannot stay in the
// fleet (another live daemon took its name).
func (m *Member) Run(ctx context.Context, units []Unit) error {
	byKey := map[string]Unit{}
	m.rec.Units = m.rec.Units[:0]
	m.rec.Sources = map[string]string{}
	for _, u := range units {
		byKey[u.Key] = u
		m.rec.Units = append(m.rec.Units, u.Key)
		m.rec.Sources[u.Key] = u.Source
	}
	slices.Sort(m.rec.Units)
	defer m.leave()

	every := m.set.TTL / 4
	// Wait a beat before taking anything, so that members started at the
	// same time see each other first and units do not move twice.
	first := time.NewTimer(every)
	defer first.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-first.C:
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := m.reconcile(ctx, byKey); err != nil {
			if errors.Is(err, ErrDuplicate) {
				return err
			}
			if ctx.Err() == nil {
				m.log.Warn("fleet: reconcile failed; trying again", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reconcile heartbeats, computes the assignment and starts or hands over
// units to match it.
func (m *Member) reconcile(ctx context.Context, units map[string]Unit) error {
	if err := m.heartbeat(ctx); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	ms, err := members(ctx, m.kv)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	can := map[string][]string{}
	for _, r := range ms {
		can[r.Name] = r.Units
	}
	can[m.set.Name] = m.rec.Units // ourselves, even if the read raced our write
	assigned := Assign(can)

	m.mu.Lock()
	defer m.mu.Unlock()
	for key, r := range m.running {
		select {
		case <-r.done:
			delete(m.running, key)
			continue
		default:
		}
		if assigned[key] != m.set.Name {
			m.log.Info("fleet: handing over", "unit", key, "to", assigned[key])
			r.cancel()
		}
	}
	now := time.Now()
	for _, key := range slices.Sorted(maps.Keys(units)) {
		if assigned[key] != m.set.Name || m.running[key] != nil || now.Before(m.retry[key].after) {
			continue
		}
		l, err := m.leases.Acquire(ctx, LeaseKey(key))
		if errors.Is(err, lease.ErrHeld) {
			continue // its old owner is handing it over, or its lease expires soon
		}
		if err != nil {
			return err
		}
		m.start(units[key], l)
	}
	return nil
}

// start runs u while l is kept; m.mu is held.
func (m *Member) start(u Unit, l *lease.Lease) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{l: l, cancel: cancel, done: make(chan struct{})}
	m.running[u.Key] = r
	m.log.Info("fleet: running", "unit", u.Key, "lease_revision", l.Revision)
	keepCtx, stopKeep := context.WithCancel(context.Background())
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		l.Keep(keepCtx, func(err error) {
			m.log.Warn("fleet: lease lost; stopping the unit at once", "unit", u.Key, "err", err)
			cancel()
		})
	}()
	go func() {
		defer close(r.done)
		err := u.Run(ctx, l)
		stopKeep()
		<-kept
		cancel()
		m.mu.Lock()
		if err != nil {
			rs := m.retry[u.Key]
			rs.n++
			rs.after = time.Now().Add(min(time.Duration(1<<min(rs.n, 6))*time.Second, time.Minute))
			m.retry[u.Key] = rs
		} else {
			delete(m.retry, u.Key)
		}
		m.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, lease.ErrLost) || l.Valid() != nil:
			m.log.Warn("fleet: unit stopped with its lease", "unit", u.Key, "err", err)
		default:
			m.log.Error("fleet: unit stopped; it starts again later", "unit", u.Key, "err", err)
		}
		if l.Valid() == nil {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := l.Release(rctx); err != nil {
				m.log.Warn("fleet: release failed; the lease will expire", "unit", u.Key, "err", err)
			}
			rcancel()
		}
	}()
}

// leave stops every unit, waits for them, and removes the member's entry.
func (m *Member) leave() {
	m.mu.Lock()
	var waits []chan struct{}
	for _, r := range m.running {
		r.cancel()
		waits = append(waits, r.done)
	}
	m.mu.Unlock()
	for _, w := range waits {
		<-w
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := memberPrefix + checkpoint.EscapeKey(m.set.Name)
	if err := m.kv.Purge(ctx, key, jetstream.LastRevision(m.rev)); err != nil && !tkjs.WrongRevision(err) {
		m.log.Warn("fleet: could not leave; the entry will expire", "err", err)
	}
}

// Running lists the units this member runs now.
func (m *Member) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k, r := range m.running {
		select {
		case <-r.done:
		default:
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// unescape is checkpoint.EscapeKey's inverse, for showing lease keys.
func unescape(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '=' && i+2 < len(k) {
			if v, err := hex.DecodeString(k[i+1 : i+3]); err == nil {
				b.WriteByte(v[0])
				i += 2
				continue
			}
		}
		b.WriteByte(k[i])
	}
	return b.String()
}
