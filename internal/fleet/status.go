package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/lease"
)

// Status is the fleet as its bucket shows it.
type Status struct {
	Time    time.Time      `json:"time"`
	Members []MemberStatus `json:"members"`
	Units   []UnitStatus   `json:"units"`
}

// MemberStatus is one live member.
type MemberStatus struct {
	Name      string    `json:"name"`
	Instance  string    `json:"instance"`
	HTTP      string    `json:"http,omitempty"`
	Version   string    `json:"version,omitempty"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
	Units     int       `json:"units"` // it can run
	Owns      int       `json:"owns"`  // it holds the lease of
}

// UnitStatus is one unit: who holds it, since when, and how far it got.
type UnitStatus struct {
	Key    string `json:"key"`
	Source string `json:"source,omitempty"`
	// Holder is the member holding the lease; "" when nobody does (being
	// handed over, or its only members are gone).
	Holder string `json:"holder"`
	// Assigned is who the assignment gives it to; Holder catches up
	// within a heartbeat or two.
	Assigned string    `json:"assigned,omitempty"`
	Since    time.Time `json:"since,omitzero"`   // the holder took it
	Renewed  time.Time `json:"renewed,omitzero"` // the lease's last renewal
	// LeaseAgeSeconds is how long the holder has held it.
	LeaseAgeSeconds float64   `json:"lease_age_seconds,omitempty"`
	Newest          time.Time `json:"newest,omitzero"` // newest event published
	Saved           time.Time `json:"saved,omitzero"`  // cursor last saved
	// LagSeconds is now minus the newest event published, as the holder
	// last reported it; absent until it published one.
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
}

// ReadStatus reads the fleet's bucket.
func ReadStatus(ctx context.Context, kv jetstream.KeyValue) (Status, error) {
	now := time.Now().UTC()
	var ms []memberRecord
	leases := map[string]leaseEntry{}
	err := snapshot(ctx, kv, []string{memberPrefix, leasePrefix}, func(e jetstream.KeyValueEntry) {
		if key, ok := strings.CutPrefix(e.Key(), leasePrefix); ok {
			var r lease.Record
			if json.Unmarshal(e.Value(), &r) == nil {
				leases[unescape(key)] = leaseEntry{rec: r, renewed: e.Created()}
			}
		} else if r, ok := decodeMember(e); ok {
			ms = append(ms, r)
		}
	})
	if err != nil {
		return Status{}, err
	}
	sortMembers(ms)
	st := Status{Time: now, Members: []MemberStatus{}, Units: []UnitStatus{}}
	can := map[string][]string{}
	units := map[string]*UnitStatus{}
	unit := func(key string) *UnitStatus {
		if u := units[key]; u != nil {
			return u
		}
		u := &UnitStatus{Key: key}
		units[key] = u
		return u
	}
	for _, r := range ms {
		can[r.Name] = r.Units
		for _, k := range r.Units {
			if u := unit(k); u.Source == "" {
				u.Source = r.Sources[k]
			}
		}
	}
	assigned := Assign(can)
	owns := map[string]int{}
	for key, l := range leases {
		u := unit(key)
		name, instance, _ := strings.Cut(l.rec.Holder, "/")
		u.Holder, u.Since, u.Renewed = name, l.rec.Since, l.renewed
		u.LeaseAgeSeconds = now.Sub(l.rec.Since).Round(time.Millisecond).Seconds()
		owns[name]++
		for _, r := range ms {
			if r.Name == name && r.Instance == instance {
				p := r.Progress[key]
				u.Newest, u.Saved = p.Newest, p.Saved
				if !p.Newest.IsZero() {
					lag := now.Sub(p.Newest).Round(time.Millisecond).Seconds()
					u.LagSeconds = &lag
				}
			}
		}
	}
	for k, u := range units {
		u.Assigned = assigned[k]
		st.Units = append(st.Units, *u)
	}
	slices.SortFunc(st.Units, func(a, b UnitStatus) int { return cmp.Compare(a.Key, b.Key) })
	for _, r := range ms {
		st.Members = append(st.Members, MemberStatus{Name: r.Name, Instance: r.Instance, HTTP: r.HTTP, Version: r.Version,
			Started: r.Started, Heartbeat: r.beat, Units: len(r.Units), Owns: owns[r.Name]})
	}
	return st, nil
}

type leaseEntry struct {
	rec     lease.Record
	renewed time.Time
}

// Handler serves ReadStatus as JSON (GET /v1/fleet).
func Handler(kv jetstream.KeyValue) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		st, err := ReadStatus(ctx, kv)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	})
}
