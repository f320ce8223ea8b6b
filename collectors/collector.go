// Package collectors defines the contract between the pipeline and the code
// that fetches raw audit records from one place (a cloud API, a bucket, a
// folder). Collectors own transport; the normalize package owns formats.
package collectors

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/sink"
)

// Record is one raw audit record, exactly as fetched.
type Record struct {
	Raw []byte
	// Format is a hint for normalize; FormatUnknown lets it sniff.
	Format normalize.Format
	// Origin says where the record came from (file and line, object key,
	// page), for dead letters and logs.
	Origin string
	// Message, when set, is published as it is instead of a normalized
	// Raw: what the collector itself says about its source (a CloudTrail
	// digest attestation). Its ID must be deterministic, like an event's.
	Message *sink.Message
	// Err is set when the collector could not even split the input into
	// records (a corrupt file): Raw then holds the undecodable bytes, which
	// the pipeline sends to the dead-letter subject as they are.
	Err error
}

// Page is the result of one Poll.
type Page struct {
	Records []Record
	// Next is the cursor to save once every record of this page is
	// acknowledged by the stream. It is never nil after a successful Poll.
	Next []byte
	// More is true when more records are ready now: the pipeline polls
	// again at once instead of waiting for the poll interval.
	More bool
}

// Collector fetches the raw records of one source stream.
//
// Poll returns the records that follow cursor (nil cursor: the beginning, as
// the collector's config defines it) and the cursor that follows them. It
// must be safe to call again with the same cursor: a page that failed to
// publish is polled again, and duplicates are dropped downstream by event id.
// Poll never returns records the cloud may still be delivering (newer than
// now - lag). An error means nothing of the page may be used; the pipeline
// retries with the same cursor after a backoff. Poll is called from one
// goroutine at a time.
type Collector interface {
	Poll(ctx context.Context, cursor []byte) (Page, error)
}

// Committer is implemented by collectors that act once a page is safe on
// the stream: deleting queue messages, remembering what was published.
//
// Commit is called with the Next of a page once every message of that page
// was acknowledged by the stream and the broker has had its sync interval
// to write it to disk (when that cursor is saved), for every such page in
// order, from the goroutine that calls Poll. A page that is polled again
// instead (publish abandoned at shutdown) is never committed. An error is
// logged and not retried: the source then delivers again, and the stream
// drops the repeat.
type Committer interface {
	Commit(ctx context.Context, next []byte) error
}

// A Collector that holds resources (clients, leases) also implements
// io.Closer; the daemon closes it after its pipeline stopped.

// Stream is one cursor's worth of a source: a source may fan out into many
// (accounts × regions, projects, subscriptions), each polled on its own.
type Stream struct {
	// Key names the stream's cursor; unique across the deployment, stable
	// across restarts.
	Key       string
	Collector Collector
}

// Settings is what the daemon passes to a factory, apart from the config.
type Settings struct {
	Logger  *slog.Logger
	DataDir string
	Now     func() time.Time
	// Registerer takes the collector's own metrics; nil: not exported.
	Registerer prometheus.Registerer
	// Health takes problems that need a human although collection goes on
	// (an integrity check that failed); nil: logged only.
	Health *Health
}

// Factory makes the collectors of one source type.
type Factory struct {
	// NewConfig returns the defaults of this type; user YAML is decoded
	// over them.
	NewConfig func() config.SourceConfig
	// Create expands one validated config into its streams.
	Create func(ctx context.Context, set Settings, cfg config.SourceConfig) ([]Stream, error)
}

// Health collects problems the daemon shows in its /readyz details. It is
// safe for concurrent use; the zero value is ready.
type Health struct {
	mu       sync.Mutex
	problems map[string]string // key → latest problem
}

// Set records the problem under key (a stream, say), replacing the last;
// an empty problem clears it.
func (h *Health) Set(key, problem string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if problem == "" {
		delete(h.problems, key)
		return
	}
	if h.problems == nil {
		h.problems = map[string]string{}
	}
	h.problems[key] = problem
}

// Problems returns the current problems, sorted by key.
func (h *Health) Problems() []string {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.problems))
	for _, k := range slices.Sorted(maps.Keys(h.problems)) {
		out = append(out, k+": "+h.problems[k])
	}
	return out
}

// Clock is Now, or time.Now when unset.
func (s Settings) Clock() func() time.Time {
	if s.Now == nil {
		return time.Now
	}
	return s.Now
}

// Log is Logger, or a logger that discards when unset.
func (s Settings) Log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Register adds a collector's metric to reg and returns it, or the one
// already registered under the same name (every source of a type
// registers the same families). A nil reg leaves c unexported.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(C)
		}
	}
	return c
}
