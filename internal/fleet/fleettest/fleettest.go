// Package fleettest holds what tests of a fleet check, whichever way they
// run the daemons (in one process, or as processes): a CloudTrail fake
// fed with events as the test runs, that the fleet settled, that no
// stream was polled by two daemons at once, and that no cursor ever went
// back.
package fleettest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
	"github.com/trailkeeper/trailkeeper/internal/fleet"
)

// Trail feeds a CloudTrail fake: history, then an event per account ×
// region stream at a steady pace until Stop.
type Trail struct {
	fake              *awsfake.Server
	accounts, regions []string
	mu                sync.Mutex
	perStream         int
	stop              context.CancelFunc
	done              chan struct{}
}

// StartTrail adds history events per stream (one every 2 minutes back
// from now), then one per stream every interval.
func StartTrail(fake *awsfake.Server, accounts, regions []string, history int, every time.Duration) *Trail {
	tr := &Trail{fake: fake, accounts: accounts, regions: regions, done: make(chan struct{})}
	tr.add(time.Now().Add(-time.Minute), history)
	ctx, cancel := context.WithCancel(context.Background())
	tr.stop = cancel
	go func() {
		defer close(tr.done)
		for ctx.Err() == nil {
			tr.add(time.Now().Add(-time.Second), 1)
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return tr
}

func (tr *Trail) add(at time.Time, n int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var evs []awsfake.Event
	for _, a := range tr.accounts {
		for _, r := range tr.regions {
			for i := range n {
				evs = append(evs, awsfake.MakeEvent(a, r, fmt.Sprintf("%s-%s-%06d", a, r, tr.perStream+i), "RunInstances", at.Add(-time.Duration(i)*2*time.Minute)))
			}
		}
	}
	tr.perStream += n
	tr.fake.AddEvents(evs...)
}

// Stop ends the feed; safe to call more than once.
func (tr *Trail) Stop() {
	tr.stop()
	<-tr.done
}

// Events is how many events the fake holds.
func (tr *Trail) Events() uint64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return uint64(tr.perStream * len(tr.accounts) * len(tr.regions))
}

// CheckPolledOnce fails t when two role sessions (two daemons) called
// LookupEvents on the same account and region at once, or a call had no
// session; it returns the calls per session.
func CheckPolledOnce(t testing.TB, reqs []awsfake.Request) map[string]int {
	t.Helper()
	calls := map[string][]awsfake.Request{}
	per := map[string]int{}
	for _, r := range reqs {
		if r.Op == "CloudTrail.LookupEvents" {
			calls[r.Account+"/"+r.Region] = append(calls[r.Account+"/"+r.Region], r)
			per[r.Session]++
			if r.Session == "" {
				t.Errorf("%s/%s: a call without a role session", r.Account, r.Region)
			}
		}
	}
	for s, rs := range calls {
		slices.SortFunc(rs, func(a, b awsfake.Request) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(rs); i++ {
			if rs[i].Session != rs[i-1].Session && rs[i].Start.Before(rs[i-1].Wall) {
				t.Errorf("%s: %s called at %s while %s's call (until %s) was running", s, rs[i].Session,
					rs[i].Start.Format(time.StampMilli), rs[i-1].Session, rs[i-1].Wall.Format(time.StampMilli))
			}
		}
	}
	return per
}

// CursorWatch records every write to a cursor bucket.
type CursorWatch struct {
	stop    context.CancelFunc
	done    chan struct{}
	history map[string][]string // key → values, consecutive repeats (claims) collapsed
}

// WatchCursors starts recording the bucket's writes.
func WatchCursors(t testing.TB, kv jetstream.KeyValue) *CursorWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cw := &CursorWatch{stop: cancel, done: make(chan struct{}), history: map[string][]string{}}
	go func() {
		defer close(cw.done)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			h := cw.history[e.Key()]
			if v := string(e.Value()); len(h) == 0 || h[len(h)-1] != v {
				cw.history[e.Key()] = append(h, v)
			}
		}
	}()
	return cw
}

// Check stops the watch and fails t when a cursor was ever written back
// to a value it had left (a stale save after a takeover); it returns the
// number of cursors and of writes.
func (cw *CursorWatch) Check(t testing.TB) (cursors, writes int) {
	t.Helper()
	cw.stop()
	<-cw.done
	for key, h := range cw.history {
		seen := map[string]int{}
		for i, v := range h {
			if j, ok := seen[v]; ok {
				t.Errorf("cursor %s went back to its write #%d at #%d: %s", key, j, i, v)
			}
			seen[v] = i
		}
		writes += len(h)
	}
	return len(cw.history), writes
}

// Patience bounds a wait for something the fleet does eventually (settle,
// take over, hand over). It is no performance target: on a loaded 2-core
// machine under -race a takeover that takes 1.2 TTLs idle can take several,
// so the tests log how long each took (docs/fleet.md has the figures) and
// fail only when it never happens.
const Patience = 2 * time.Minute

// WaitSettled asks the daemon at httpAddr for GET /v1/fleet until exactly
// members are alive, each able to run units units, and every unit is held
// by the member it is assigned to; it returns how many each holds and how
// long that took, or fails t after Patience.
func WaitSettled(t testing.TB, httpAddr string, units int, members ...string) (map[string]int, time.Duration) {
	t.Helper()
	start := time.Now()
	// The handler has 10 s of its own to read the bucket; a shorter client
	// timeout only turns a slow answer into an error.
	c := http.Client{Timeout: 15 * time.Second}
	for {
		st, err := status(&c, httpAddr)
		per := map[string]int{}
		ok := err == nil && len(st.Members) == len(members) && len(st.Units) == units
		for _, m := range st.Members {
			ok = ok && slices.Contains(members, m.Name) && m.Units == units
		}
		for _, u := range st.Units {
			ok = ok && u.Holder != "" && u.Holder == u.Assigned
			per[u.Holder]++
		}
		if ok {
			return per, time.Since(start)
		}
		if time.Since(start) > Patience {
			t.Fatalf("not settled on %v within %s: %+v %v", members, Patience, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func status(c *http.Client, httpAddr string) (fleet.Status, error) {
	var st fleet.Status
	resp, err := c.Get("http://" + httpAddr + "/v1/fleet")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/fleet: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
