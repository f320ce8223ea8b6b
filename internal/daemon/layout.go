package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/fleet"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// roleArchiver is the fleet unit of the archiver, which runs on one daemon.
const roleArchiver = "role/archiver"

// layout is what the daemon keeps in JetStream besides messages.
type layout struct {
	stream natsjs.Stream
	store  *checkpoint.KV // nil unless checkpoint.store is kv
	runs   natsjs.KeyValue
}

func placement(cfg *config.Config) jetstream.Placement {
	return jetstream.Placement{Cluster: cfg.Stream.Placement.Cluster, Tags: cfg.Stream.Placement.Tags}
}

// ensureLayout creates the stream and buckets the config describes, or
// checks that those that exist match it. Every difference of every one is
// reported at once (a *jetstream.MismatchError each), and nothing is
// changed unless apply: on a shared cluster, replicas and limits are the
// operator's to change, not a restarting daemon's. The fleet's bucket is
// checked by fleet.Join the same way; check also covers it here when the
// fleet is enabled.
func ensureLayout(ctx context.Context, cfg *config.Config, js natsjs.JetStream, apply bool) (layout, error) {
	var l layout
	var errs []error
	var err error
	pl := placement(cfg)
	l.stream, err = jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:            cfg.Stream.Name,
		DuplicateWindow: cfg.Stream.DuplicateWindow,
		MaxAge:          cfg.Stream.MaxAge,
		MaxBytes:        cfg.Stream.MaxBytes,
		Replicas:        cfg.Stream.Replicas,
		Placement:       pl,
		Apply:           apply,
	})
	errs = append(errs, err)
	if cfg.Checkpoint.Store == "kv" {
		l.store, err = checkpoint.NewKV(ctx, js, checkpoint.KVConfig{Bucket: cfg.Checkpoint.Bucket, Replicas: cfg.Stream.Replicas, Placement: pl, Apply: apply})
		errs = append(errs, err)
	}
	l.runs, err = jetstream.EnsureKV(ctx, js, jetstream.KVConfig{Bucket: cfg.Correlate.Bucket, Description: "trailkeeper IaC runs",
		Replicas: cfg.Stream.Replicas, Placement: pl, Apply: apply})
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return layout{}, fmt.Errorf("%w\n(change the config to match, or run trailkeeper fleet check --apply to change the cluster)", err)
	}
	return l, nil
}

// CheckLayout is ensureLayout for `trailkeeper fleet check`: it reports
// (or, with apply, removes) the differences, the fleet's bucket included.
func CheckLayout(ctx context.Context, cfg *config.Config, apply bool) error {
	discard := slog.New(slog.DiscardHandler)
	conn, err := connect(ctx, cfg, discard)
	if err != nil {
		return err
	}
	defer conn.close(discard)
	js, err := natsjs.New(conn.nc)
	if err != nil {
		return err
	}
	_, err = ensureLayout(ctx, cfg, js, apply)
	if cfg.Fleet.Enabled || cfg.NATS.URL != "" {
		_, ferr := jetstream.EnsureKV(ctx, js, fleet.BucketConfig(cfg.Fleet.Bucket, cfg.Fleet.LeaseTTL, cfg.Stream.Replicas, placement(cfg), apply))
		err = errors.Join(err, ferr)
	}
	return err
}

// memberName is fleet.name, or the host name.
func memberName(f config.Fleet) (string, error) {
	if f.Name != "" {
		return f.Name, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("fleet.name is not set and the host name is unknown: %w", err)
	}
	return hostMember(h), nil
}

// hostMember makes a host name a member name: what a consumer name
// (INDEX_<name>) and a config name allow, a-z A-Z 0-9 _ -, at most 64.
func hostMember(h string) string {
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// pipelines are the pipelines running now, by stream key: in a fleet
// they come and go with leases.
type pipelines struct {
	mu    sync.Mutex
	byKey map[string]*pipeline.Pipeline
}

func (ps *pipelines) add(p *pipeline.Pipeline) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.byKey[p.Key()] = p
}

func (ps *pipelines) remove(p *pipeline.Pipeline) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.byKey[p.Key()] == p {
		delete(ps.byKey, p.Key())
	}
}

func (ps *pipelines) list() []*pipeline.Pipeline {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*pipeline.Pipeline, 0, len(ps.byKey))
	for _, k := range slices.Sorted(maps.Keys(ps.byKey)) {
		out = append(out, ps.byKey[k])
	}
	return out
}

// progress is fleet.Settings.Progress.
func (ps *pipelines) progress(key string) fleet.Progress {
	ps.mu.Lock()
	p := ps.byKey[key]
	ps.mu.Unlock()
	if p == nil {
		return fleet.Progress{}
	}
	st := p.Status()
	return fleet.Progress{Newest: st.Newest.UTC(), Saved: st.Saved.UTC()}
}
