package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/embednats"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/fleet"
	"github.com/trailkeeper/trailkeeper/internal/fleet/fleettest"
	"github.com/trailkeeper/trailkeeper/internal/lease"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAssignEvenStableAndEligible(t *testing.T) {
	units := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("aws/1234567890%02d/us-east-1", i))
		}
		return out
	}
	all := units(24)
	three := map[string][]string{"d1": all, "d2": all, "d3": all}
	a := fleet.Assign(three)
	if !maps.Equal(a, fleet.Assign(three)) {
		t.Fatal("the assignment is not deterministic")
	}
	load := map[string]int{}
	for _, m := range a {
		load[m]++
	}
	if len(a) != 24 || load["d1"] != 8 || load["d2"] != 8 || load["d3"] != 8 {
		t.Errorf("load = %v, want 8 each of 24", load)
	}
	// Shares differ by one at most, whatever the division leaves.
	for n := 1; n <= 30; n++ {
		u := units(n)
		load := map[string]int{}
		for _, m := range fleet.Assign(map[string][]string{"d1": u, "d2": u, "d3": u, "d4": u}) {
			load[m]++
		}
		lo, hi := n, 0
		for _, m := range []string{"d1", "d2", "d3", "d4"} {
			lo, hi = min(lo, load[m]), max(hi, load[m])
		}
		if hi-lo > 1 {
			t.Errorf("%d units over 4 members: %v", n, load)
		}
	}
	// A fourth member takes its share, and units move only to it.
	four := maps.Clone(three)
	four["d4"] = all
	b := fleet.Assign(four)
	moved, toNew := 0, 0
	for u, m := range b {
		if a[u] != m {
			moved++
			if m == "d4" {
				toNew++
			}
		}
	}
	if toNew != 6 {
		t.Errorf("%d units moved to the new member, want its share 6", toNew)
	}
	if moved > 9 {
		t.Errorf("%d units moved for 6 to the new member", moved)
	}
	// A member leaving: only its units move.
	two := map[string][]string{"d1": all, "d2": all}
	c := fleet.Assign(two)
	for u, m := range a {
		if m != "d3" && c[u] != m {
			t.Errorf("%s moved from %s to %s when d3 left", u, m, c[u])
		}
	}
	// A unit only some members know goes to one of them.
	partial := map[string][]string{"d1": all, "d2": append(units(2), "files/only-d2"), "d3": all}
	if got := fleet.Assign(partial)["files/only-d2"]; got != "d2" {
		t.Errorf("a unit only d2 can run went to %q", got)
	}
	if len(fleet.Assign(nil)) != 0 {
		t.Error("no members, yet units were assigned")
	}
}

// owners records who runs each unit and fails on two at once.
type owners struct {
	t      *testing.T
	mu     sync.Mutex
	active map[string]string // unit → member
}

func (o *owners) unit(member, key string) fleet.Unit {
	return fleet.Unit{Key: key, Source: "src", Run: func(ctx context.Context, l *lease.Lease) error {
		o.mu.Lock()
		if prev, ok := o.active[key]; ok {
			o.t.Errorf("%s started %s while %s runs it", member, key, prev)
		}
		o.active[key] = member
		o.mu.Unlock()
		<-ctx.Done()
		// Work in hand is finished while the lease holds; a lost lease
		// stops at once.
		if l.Valid() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		o.mu.Lock()
		delete(o.active, key)
		o.mu.Unlock()
		return nil
	}}
}

func (o *owners) snapshot() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.active)
}

type member struct {
	name   string
	nc     *nats.Conn
	m      *fleet.Member
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

const ttl = 2 * time.Second

func join(t *testing.T, srv *embednats.Server, name string, o *owners, keys []string) *member {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	m, err := fleet.Join(context.Background(), fleet.Settings{JS: js, Name: name, TTL: ttl})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	var units []fleet.Unit
	for _, k := range keys {
		units = append(units, o.unit(name, k))
	}
	ctx, cancel := context.WithCancel(context.Background())
	mb := &member{name: name, nc: nc, m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { mb.done <- m.Run(ctx, units) }()
	t.Cleanup(mb.stop)
	return mb
}

func (mb *member) stop() {
	mb.once.Do(func() {
		mb.cancel()
		<-mb.done
		mb.nc.Close()
	})
}

// waitFor waits until cond holds, failing after fleettest.Patience; it
// returns how long that took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > fleettest.Patience {
			t.Fatalf("not within %s: %s", fleettest.Patience, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func spread(active map[string]string) map[string]int {
	out := map[string]int{}
	for _, m := range active {
		out[m]++
	}
	return out
}

// Members share the units evenly, each unit runs once, a member that
// dies has its units taken over (in about a TTL, logged), a member that joins gets
// its share, and a member that leaves hands its units over at once.
func TestFleetOwnsEachUnitOnce(t *testing.T) {
	srv, _, _ := embednatstest.Start(t)
	o := &owners{t: t, active: map[string]string{}}
	var keys []string
	for i := range 12 {
		keys = append(keys, fmt.Sprintf("unit-%02d", i))
	}
	d1 := join(t, srv, "d1", o, keys)
	d2 := join(t, srv, "d2", o, keys)
	join(t, srv, "d3", o, keys)
	took := waitFor(t, "every unit running, 4 per member", func() bool {
		s := spread(o.snapshot())
		return len(o.snapshot()) == 12 && s["d1"] == 4 && s["d2"] == 4 && s["d3"] == 4
	})
	t.Logf("12 units on 3 members %s after they joined", took.Round(time.Millisecond))

	st, err := fleet.ReadStatus(context.Background(), d1.m.KV())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 3 || len(st.Units) != 12 {
		t.Fatalf("status: %d members, %d units", len(st.Members), len(st.Units))
	}
	active := o.snapshot()
	for _, u := range st.Units {
		if u.Holder != active[u.Key] || u.Assigned != u.Holder || u.Source != "src" || u.Since.IsZero() {
			t.Errorf("status of %s = %+v, runs on %s", u.Key, u, active[u.Key])
		}
	}

	// d2 dies: its connection is cut, it cannot renew or say goodbye.
	var d2units []string
	for k, m := range o.snapshot() {
		if m == "d2" {
			d2units = append(d2units, k)
		}
	}
	d2.nc.Close()
	took = waitFor(t, "d2's units taken over by d1 and d3", func() bool {
		s := o.snapshot()
		for _, k := range d2units {
			if m := s[k]; m != "d1" && m != "d3" {
				return false
			}
		}
		return true
	})
	t.Logf("d2's %d units taken over %s after it died (TTL %s)", len(d2units), took.Round(time.Millisecond), ttl)
	waitFor(t, "6 each on d1 and d3", func() bool {
		s := spread(o.snapshot())
		return s["d1"] == 6 && s["d3"] == 6
	})

	// d4 joins and gets its share (of three live members); d1 leaves cleanly and its units move at
	// once (no TTL to wait).
	join(t, srv, "d4", o, keys)
	waitFor(t, "d4 has its share", func() bool {
		s := spread(o.snapshot())
		return len(o.snapshot()) == 12 && s["d4"] == 4 && s["d1"] == 4 && s["d3"] == 4
	})
	d1.stop()
	took = waitFor(t, "d1's units on d3 and d4", func() bool {
		s := spread(o.snapshot())
		return s["d3"] == 6 && s["d4"] == 6
	})
	t.Logf("d1's units handed over %s after it left", took.Round(time.Millisecond))
}

// A second daemon with a live member's name is refused.
func TestDuplicateName(t *testing.T) {
	srv, _, js := embednatstest.Start(t)
	o := &owners{t: t, active: map[string]string{}}
	join(t, srv, "d1", o, []string{"u"})
	_, err := fleet.Join(context.Background(), fleet.Settings{JS: js, Name: "d1", TTL: ttl})
	if !errors.Is(err, fleet.ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
}

// A daemon outside any fleet on a shared cluster holds the solo lease: a
// second one, or a fleet member, is refused, and the other way round; the
// same daemon restarted faster than the TTL waits out its old self.
func TestSoloGuardsTheCluster(t *testing.T) {
	srv, _, js := embednatstest.Start(t)
	ctx := context.Background()
	set := fleet.Settings{JS: js, Name: "solo-1", TTL: ttl}
	if _, err := fleet.JoinSolo(ctx, set); err != nil {
		t.Fatal(err)
	}
	other := set
	other.Name = "solo-2"
	if _, err := fleet.JoinSolo(ctx, other); !errors.Is(err, fleet.ErrShared) {
		t.Fatalf("a second solo daemon: %v, want ErrShared", err)
	}
	if _, err := fleet.Join(ctx, fleet.Settings{JS: js, Name: "d1", TTL: ttl}); !errors.Is(err, fleet.ErrShared) {
		t.Fatalf("a fleet member beside a solo daemon: %v, want ErrShared", err)
	}
	// That one "crashed" (it never ran, so never renewed); restarted
	// under its name, the daemon waits its old lease out.
	start := time.Now()
	s2, err := fleet.JoinSolo(ctx, set)
	if err != nil {
		t.Fatalf("restart under the same name: %v", err)
	}
	t.Logf("restarted solo daemon took the lease after %s (TTL %s)", time.Since(start).Round(time.Millisecond), ttl)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s2.Run(rctx) }()
	time.Sleep(2 * ttl) // kept past its TTL
	if _, err := fleet.JoinSolo(ctx, other); !errors.Is(err, fleet.ErrShared) {
		t.Fatalf("a second solo daemon beside a running one: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Released: a fleet may use the cluster now, and then no solo daemon.
	o := &owners{t: t, active: map[string]string{}}
	join(t, srv, "d1", o, []string{"u"})
	if _, err := fleet.JoinSolo(ctx, set); !errors.Is(err, fleet.ErrShared) {
		t.Fatalf("a solo daemon beside a fleet: %v, want ErrShared", err)
	}
}
