package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Registry holds the runs: a JetStream KV bucket (keys are hashes of run
// keys; run keys may hold characters KV keys may not), with an in-memory
// index by marker. Every change is also published on iac.runs.<tool>, on
// the archived stream.
type Registry struct {
	js jetstream.JetStream
	kv jetstream.KeyValue

	mu       sync.RWMutex
	runs     map[string]*Run   // run key → run
	byMarker map[string]string // token, Azure correlation id or explicit marker → run key
	managed  map[string]string // lower-cased resource id → workspace
	// byAddress: workspace → resource address → ids, from its state.
	byAddress map[string]map[string][]string
	explicit  []string // every run's explicit markers, searched in each record
	rev       uint64   // the newest bucket revision applied
}

// OpenRegistry opens (or creates) the bucket and loads every run.
func OpenRegistry(ctx context.Context, js jetstream.JetStream, bucket string) (*Registry, error) {
	kv, err := tkjs.EnsureKV(ctx, js, tkjs.KVConfig{Bucket: bucket, Description: "trailkeeper IaC runs"})
	if err != nil {
		return nil, fmt.Errorf("run registry: %w", err)
	}
	return LoadRegistry(ctx, js, kv)
}

// LoadRegistry loads every run of an open bucket (see tkjs.EnsureKV):
// one watcher reads them all, not a request per key.
func LoadRegistry(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (*Registry, error) {
	r := &Registry{js: js, kv: kv, runs: map[string]*Run{}, byMarker: map[string]string{}, managed: map[string]string{}, byAddress: map[string]map[string][]string{}}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("run registry: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("run registry: the watch closed while loading")
			}
			if e == nil {
				return r, nil
			}
			r.apply(e)
		}
	}
}

// apply indexes one entry of the bucket: a run, or a workspace's state.
func (r *Registry) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	r.rev = max(r.rev, e.Revision())
	r.mu.Unlock()
	key, value := e.Key(), e.Value()
	if ws, body, ok := strings.Cut(string(value), "\n"); ok && strings.HasPrefix(key, "state.") {
		if st, ok := decodeState([]byte(body)); ok {
			r.indexState(ws, st)
		}
		return
	}
	var run Run
	if json.Unmarshal(value, &run) == nil && run.Key != "" {
		r.index(&run)
	}
}

// Watch applies runs and states that other daemons of a fleet store,
// until ctx ends: a run registered through one daemon's API links events
// that another daemon polls, and the drift detector, which every daemon
// runs, knows it too. It resumes after the last revision loaded or seen,
// so nothing stored meanwhile is missed and nothing is read twice. It
// returns nil when ctx ends.
func (r *Registry) Watch(ctx context.Context) error {
	for ctx.Err() == nil {
		r.mu.RLock()
		from := r.rev + 1
		r.mu.RUnlock()
		w, err := r.kv.WatchAll(ctx, jetstream.IgnoreDeletes(), jetstream.ResumeFromRevision(from))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			time.Sleep(time.Second)
			continue
		}
		for e := range w.Updates() {
			if e != nil {
				r.apply(e)
			}
		}
		_ = w.Stop()
	}
	return nil
}

func kvKey(runKey string) string { return Token(runKey) }

func (r *Registry) index(run *Run) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.learnIDs(run)
	r.runs[run.Key] = run
	r.byMarker[Token(run.Key)] = run.Key
	r.byMarker[AzureCorrelationID(run.Key)] = run.Key
	for _, m := range run.Markers {
		if _, known := r.byMarker[m]; !known {
			// A new slice: markersIn reads the old one without the lock.
			r.explicit = append(slices.Clip(r.explicit), m)
		}
		r.byMarker[m] = run.Key
	}
}

// Put stores a run (new or updated) and publishes it.
func (r *Registry) Put(ctx context.Context, run Run) error {
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	if _, err := r.kv.Put(ctx, kvKey(run.Key), b); err != nil {
		return fmt.Errorf("store run %s: %w", run.Key, err)
	}
	// Its id makes a re-sent record a duplicate the stream drops.
	id := fmt.Sprintf("run:%s:%s:%s", Token(run.Key), run.Status, finished(run))
	if _, err := r.js.Publish(ctx, "iac.runs."+subjectToken(run.Tool), b, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish run %s: %w", run.Key, err)
	}
	r.index(&run)
	return nil
}

func finished(run Run) string {
	if run.FinishedAt == nil {
		return ""
	}
	return run.FinishedAt.UTC().Format(time.RFC3339Nano)
}

func subjectToken(s string) string {
	return strings.Map(func(c rune) rune {
		if c == '.' || c == '*' || c == '>' || c == ' ' {
			return '_'
		}
		return c
	}, strings.ToLower(s))
}

// Get returns a run.
func (r *Registry) Get(key string) (Run, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	run, ok := r.runs[key]
	if !ok {
		return Run{}, false
	}
	return *run, true
}

// Since lists the runs started at or after t, oldest first.
func (r *Registry) Since(t time.Time) []Run {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Run
	for _, run := range r.runs {
		if !run.StartedAt.Before(t) {
			out = append(out, *run)
		}
	}
	slices.SortFunc(out, func(a, b Run) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// byMarkerKey returns the run a marker names.
func (r *Registry) byMarkerKey(m string) (Run, bool) {
	r.mu.RLock()
	key, ok := r.byMarker[m]
	r.mu.RUnlock()
	if !ok {
		return Run{}, false
	}
	return r.Get(key)
}

// explicitMarkers returns the explicit markers of every run, for the
// search; kept up to date by index, not rebuilt per event.
func (r *Registry) explicitMarkers() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.explicit
}

// around returns the runs whose window holds t.
func (r *Registry) around(t, now time.Time) []Run {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Run
	for _, run := range r.runs {
		from, to := run.window(now)
		if !t.Before(from) && !t.After(to) {
			out = append(out, *run)
		}
	}
	slices.SortFunc(out, func(a, b Run) int { return strings.Compare(a.Key, b.Key) })
	return out
}
