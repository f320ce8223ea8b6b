package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Placement pins a stream's (or bucket's) replicas to a cluster and to
// servers that carry every tag. The zero value lets JetStream choose.
type Placement struct {
	Cluster string
	Tags    []string
}

func (p Placement) js() *jetstream.Placement {
	if p.Cluster == "" && len(p.Tags) == 0 {
		return nil
	}
	return &jetstream.Placement{Cluster: p.Cluster, Tags: p.Tags}
}

func placementOf(p *jetstream.Placement) Placement {
	if p == nil {
		return Placement{}
	}
	return Placement{Cluster: p.Cluster, Tags: p.Tags}
}

func (p Placement) String() string {
	if p.Cluster == "" && len(p.Tags) == 0 {
		return "any"
	}
	s := []string{}
	if p.Cluster != "" {
		s = append(s, "cluster "+p.Cluster)
	}
	if len(p.Tags) > 0 {
		s = append(s, "tags "+strings.Join(p.Tags, ","))
	}
	return strings.Join(s, ", ")
}

func (p Placement) equal(q Placement) bool {
	a, b := slices.Clone(p.Tags), slices.Clone(q.Tags)
	slices.Sort(a)
	slices.Sort(b)
	return p.Cluster == q.Cluster && slices.Equal(a, b)
}

// MismatchError says how a stream or bucket that already exists differs
// from the config. Start-up reports it instead of changing the cluster
// under other daemons' feet: replicas, limits and placement are the
// operator's decision (trailkeeper fleet check --apply makes the change).
type MismatchError struct {
	Kind  string // stream or bucket
	Name  string
	Diffs []string // "replicas is 1, the config says 3"
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s %s differs from the config: %s", e.Kind, e.Name, strings.Join(e.Diffs, "; "))
}

// diffs collects "what is, what the config says" lines.
type diffs []string

func (d *diffs) add(what string, is, want any) {
	if fmt.Sprint(is) != fmt.Sprint(want) {
		*d = append(*d, fmt.Sprintf("%s is %v, the config says %v", what, is, want))
	}
}

func (d *diffs) placement(is, want Placement) {
	if !is.equal(want) {
		*d = append(*d, fmt.Sprintf("placement is %s, the config says %s", is, want))
	}
}

func duration(d time.Duration) string {
	if d == 0 {
		return "0 (none)"
	}
	return d.String()
}

// streamConfig is the JetStream config of cfg.
func (cfg StreamConfig) streamConfig() jetstream.StreamConfig {
	maxBytes := cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "trailkeeper: normalized cloud audit events, dead letters, IaC runs",
		Subjects:    Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardOld,
		Placement:   cfg.Placement.js(),
		// Audit data is evidence: nobody deletes single messages or purges.
		DenyDelete: true,
		DenyPurge:  true,
	}
}

// differences lists how the existing stream's config is not want.
func streamDiffs(is, want jetstream.StreamConfig) []string {
	var d diffs
	for _, s := range want.Subjects {
		if !slices.Contains(is.Subjects, s) {
			d = append(d, fmt.Sprintf("subjects are %s, without %s", strings.Join(is.Subjects, " "), s))
		}
	}
	d.add("replicas", is.Replicas, want.Replicas)
	d.add("duplicate window", duration(is.Duplicates), duration(want.Duplicates))
	d.add("max age", duration(is.MaxAge), duration(want.MaxAge))
	d.add("max bytes", is.MaxBytes, want.MaxBytes)
	d.add("storage", is.Storage, want.Storage)
	d.placement(placementOf(is.Placement), placementOf(want.Placement))
	if !is.DenyDelete || !is.DenyPurge {
		d = append(d, "deleting or purging messages is allowed, the config denies both (audit evidence)")
	}
	return d
}

// Busy reports whether err is a cluster that did not answer in time
// (a leader election, several daemons creating the same replicated
// stream at once): worth trying again.
func Busy(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// Patiently runs op until it returns something else than Busy, for up to
// a minute unless ctx ends first: for start-up steps on a cluster that is
// still electing leaders.
func Patiently[T any](ctx context.Context, op func() (T, error)) (T, error) {
	deadline := time.Now().Add(time.Minute)
	wait := 200 * time.Millisecond
	for {
		v, err := op()
		if err == nil || !Busy(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// EnsureStream creates the stream as cfg says, or checks that the stream
// that exists matches it: a difference is a *MismatchError listing every
// one, unless cfg.Apply, which updates the stream to cfg. A cluster too
// busy to answer is asked again for up to a minute.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	return Patiently(ctx, func() (jetstream.Stream, error) { return ensureStream(ctx, js, cfg) })
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	want := cfg.streamConfig()
	for {
		st, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // another daemon created it first: check it
			}
			if err != nil {
				return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
			}
			return st, nil
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		d := streamDiffs(st.CachedInfo().Config, want)
		if len(d) == 0 {
			return st, nil
		}
		if !cfg.Apply {
			return nil, &MismatchError{Kind: "stream", Name: cfg.Name, Diffs: d}
		}
		st, err = js.UpdateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("update stream %s: %w", cfg.Name, err)
		}
		return st, nil
	}
}

// KVConfig is what a key-value bucket must look like.
type KVConfig struct {
	Bucket      string
	Description string
	TTL         time.Duration // how long an entry lives without a write; 0: forever
	Replicas    int           // default 1
	Placement   Placement
	// Apply updates an existing bucket that differs, instead of reporting.
	Apply bool
}

func (c KVConfig) kvConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: c.Bucket, Description: c.Description, History: 1, TTL: c.TTL,
		Storage: jetstream.FileStorage, Replicas: max(c.Replicas, 1), Placement: c.Placement.js(),
	}
}

// EnsureKV opens the bucket, creating it as c says when it does not exist;
// a bucket that exists and differs is a *MismatchError (see EnsureStream).
func EnsureKV(ctx context.Context, js jetstream.JetStream, c KVConfig) (jetstream.KeyValue, error) {
	return Patiently(ctx, func() (jetstream.KeyValue, error) { return ensureKV(ctx, js, c) })
}

func ensureKV(ctx context.Context, js jetstream.JetStream, c KVConfig) (jetstream.KeyValue, error) {
	want := c.kvConfig()
	for {
		kv, err := js.KeyValue(ctx, c.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, want)
			if errors.Is(err, jetstream.ErrBucketExists) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create bucket %s: %w", c.Bucket, err)
			}
			return kv, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", c.Bucket, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", c.Bucket, err)
		}
		is := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
		var d diffs
		d.add("replicas", is.Replicas, want.Replicas)
		d.add("entry TTL", duration(is.MaxAge), duration(want.TTL))
		d.add("storage", is.Storage, want.Storage)
		d.placement(placementOf(is.Placement), c.Placement)
		if len(d) == 0 {
			return kv, nil
		}
		if !c.Apply {
			return nil, &MismatchError{Kind: "bucket", Name: c.Bucket, Diffs: d}
		}
		kv, err = js.UpdateKeyValue(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("update bucket %s: %w", c.Bucket, err)
		}
		return kv, nil
	}
}

// WrongRevision reports whether err is a key-value compare-and-set that
// found another revision: someone else wrote the key (or it expired).
func WrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
