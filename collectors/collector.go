// Package collectors defines the contract between the pipeline and the code
// that fetches raw audit records from one place (a cloud API, a bucket, a
// folder). Collectors own transport; the normalize package owns formats.
package collectors

import (
	"context"
	"log/slog"
	"time"

	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// Record is one raw audit record, exactly as fetched.
type Record struct {
	Raw []byte
	// Format is a hint for normalize; FormatUnknown lets it sniff.
	Format normalize.Format
	// Origin says where the record came from (file and line, object key,
	// page), for dead letters and logs.
	Origin string
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
}

// Factory makes the collectors of one source type.
type Factory struct {
	// NewConfig returns the defaults of this type; user YAML is decoded
	// over them.
	NewConfig func() config.SourceConfig
	// Create expands one validated config into its streams.
	Create func(ctx context.Context, set Settings, cfg config.SourceConfig) ([]Stream, error)
}
