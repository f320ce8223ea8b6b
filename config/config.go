// Package config is what users write: the YAML schema of trailkeeper, its
// defaults, and the checks that report every problem with its path and line.
//
// Code that runs the daemon takes settings derived from this, never the YAML.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole file.
type Config struct {
	// DataDir holds the embedded JetStream store and file checkpoints.
	DataDir    FilePath   `yaml:"data_dir"`
	Log        Log        `yaml:"log"`
	NATS       NATS       `yaml:"nats"`
	Stream     Stream     `yaml:"stream"`
	Checkpoint Checkpoint `yaml:"checkpoint"`
	Pipeline   Pipeline   `yaml:"pipeline"`
	HTTP       HTTP       `yaml:"http"`
	Archive    Archive    `yaml:"archive"`
	Correlate  Correlate  `yaml:"correlation"`
	Index      Index      `yaml:"index"`
	Fleet      Fleet      `yaml:"fleet"`
	Disk       Disk       `yaml:"disk"`
	Sources    []Source   `yaml:"sources"`
}

// Disk guards the folders the daemon writes to (data_dir, the archive's
// dir, checkpoint.dir, index.path): while one has less than MinFree, no
// new page is taken (the one in flight finishes), /readyz says "disk
// full: <path>", and ingestion resumes by itself once space is freed.
type Disk struct {
	// MinFree in bytes; below it a folder counts as full. It leaves room
	// for the page in flight, the broker's and the index's own writes.
	MinFree int64 `yaml:"min_free"`
	// CheckInterval is how often free space is read.
	CheckInterval time.Duration `yaml:"check_interval"`
}

// Fleet runs several daemons against one NATS cluster: each source stream
// is polled by one daemon at a time, through a lease, and the archiver
// runs on one (docs/fleet.md). Every daemon of a fleet has the same
// sources, stream and buckets, and its own name. A daemon without it on
// an external cluster (nats.url) holds a lease in the same bucket that
// keeps a second such daemon, or a fleet, from polling its sources too.
type Fleet struct {
	// Enabled makes this daemon one of a fleet (needs nats.url and the kv
	// checkpoint store).
	Enabled bool `yaml:"enabled"`
	// Name of this daemon in the fleet: unique, and stable across restarts
	// (a restarted daemon waits out its old self's heartbeat under the
	// same name). Default: the host name.
	Name string `yaml:"name"`
	// LeaseTTL is how long a daemon's leases outlive it: its sources are
	// taken over within about 1¼ times this after it dies (at most twice). Every daemon must
	// use the same (it is the bucket's).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Bucket is the JetStream KV bucket of leases and heartbeats.
	Bucket string `yaml:"bucket"`
}

// Index is the on-call change index behind the query API, the CLI's
// who-changed, timeline and drift, and the web page (internal/index).
type Index struct {
	// Disabled turns the index, the query API and the web page off.
	Disabled bool `yaml:"disabled"`
	// Path of the SQLite database; default <data_dir>/index.db. It is a
	// cache of the stream and the archive: delete it and it is rebuilt.
	Path FilePath `yaml:"path"`
	// Retention drops changes older than this from the index (not from
	// the stream or the archive); 0 keeps everything.
	Retention time.Duration `yaml:"retention"`
}

// Correlate links events to IaC runs (internal/correlate).
type Correlate struct {
	// Bucket is the JetStream KV bucket of the run registry.
	Bucket string `yaml:"bucket"`
	// APIToken guards the run registry API (/v1/runs); empty: no API.
	APIToken Secret `yaml:"api_token"`
	// HCPWebhookSecret verifies HCP Terraform run notifications
	// (/v1/webhooks/hcp-terraform); empty: no webhook.
	HCPWebhookSecret Secret `yaml:"hcp_webhook_secret"`
	// DriftGrace is how long after a change to an IaC-managed resource the
	// drift detector waits for its run (runs and events arrive late).
	DriftGrace time.Duration `yaml:"drift_grace"`
}

// Archive is the tamper-evident archive of the whole stream (sink/worm).
type Archive struct {
	// Dir is the archive's folder; empty: no archive.
	Dir FilePath `yaml:"dir"`
	// KeyFile holds the Ed25519 signer key (trailkeeper keygen); Key is
	// the key itself (${env:…}). With neither, a key is generated at the
	// first start in <data_dir>/archive.key, its verifier key beside it.
	KeyFile FilePath `yaml:"key_file"`
	Key     Secret   `yaml:"key"` // see key_file
	// SegmentBytes and SegmentAge: a segment is cut at either size
	// (uncompressed) or age, and at a UTC day boundary; the age bounds
	// publish-to-archived latency.
	SegmentBytes int           `yaml:"segment_bytes"`
	SegmentAge   time.Duration `yaml:"segment_age"` // see segment_bytes
	// S3 stores the archive in a bucket with Object Lock instead of Dir.
	S3 ArchiveS3 `yaml:"s3"`
}

// ArchiveS3 is an archive bucket. Credentials come from the AWS default
// chain.
type ArchiveS3 struct {
	Bucket string `yaml:"bucket"` // created with Object Lock enabled
	Prefix string `yaml:"prefix"` // a key prefix inside the bucket
	Region string `yaml:"region"` // the bucket's region
	// EndpointURL for S3-compatible servers (path-style addressing).
	EndpointURL string `yaml:"endpoint_url"`
	// Mode is COMPLIANCE (no one can delete before retain-until) or
	// GOVERNANCE (privileged users can).
	Mode string `yaml:"mode"`
	// Retention is how long each object is locked from its write.
	Retention time.Duration `yaml:"retention"`
	// AllowUnlocked accepts a bucket without Object Lock (tests, trials).
	AllowUnlocked bool `yaml:"allow_unlocked"`
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// NATS says where the stream lives. With no URL an embedded server runs.
type NATS struct {
	// URL of an existing NATS server or cluster (nats://host:4222,
	// comma-separated for several); empty runs the embedded server.
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials file (JWT and nkey seed).
	CredsFile FilePath `yaml:"creds_file"`
	NKeyFile  FilePath `yaml:"nkey_file"` // a seed file for nkey authentication
	// User and Password authenticate with a user and password.
	User     string   `yaml:"user"`
	Password Secret   `yaml:"password"` // with user
	Token    Secret   `yaml:"token"`    // a NATS authentication token
	TLS      TLS      `yaml:"tls"`
	Embedded Embedded `yaml:"embedded"`
	// SyncInterval is how long the server may hold written messages before
	// fsync. The pipeline saves a cursor only this long after the last ack
	// (DESIGN §2). Embedded: applied to the server. External: set it to the
	// cluster's sync_interval; 0 trusts replication alone.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// TLS for an external NATS connection.
type TLS struct {
	CAFile   FilePath `yaml:"ca_file"`   // PEM CAs that sign the server certificate
	CertFile FilePath `yaml:"cert_file"` // PEM client certificate (mutual TLS)
	KeyFile  FilePath `yaml:"key_file"`  // its PEM private key
}

// Embedded configures the in-process nats-server.
type Embedded struct {
	// Host the embedded server listens on for SIEM clients (keep it on
	// loopback unless they need it).
	Host string `yaml:"host"`
	// Port for SIEM clients; -1 picks a free port, 0 disables the listener.
	Port int `yaml:"port"`
	// SyncAlways fsyncs every message (slow, for the paranoid).
	SyncAlways bool `yaml:"sync_always"`
	// MaxPayload is the largest message the server accepts.
	MaxPayload int32 `yaml:"max_payload"`
	// MaxStore caps the bytes JetStream may store, in bytes. It is set,
	// not taken from the free space at start (nats-server's default,
	// which freezes a momentary figure); disk.min_free pauses ingestion
	// before the disk itself fills.
	MaxStore int64 `yaml:"max_store"`
}

// Stream configures the JetStream stream that holds everything.
type Stream struct {
	Name string `yaml:"name"` // the stream's name
	// DuplicateWindow must cover every re-poll overlap, or re-read records
	// would be stored twice.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	MaxAge          time.Duration `yaml:"max_age"`   // 0 keeps forever
	MaxBytes        int64         `yaml:"max_bytes"` // 0: no limit; the oldest messages go first
	Replicas        int           `yaml:"replicas"`  // 1 embedded; 3 on a cluster
	// Placement pins the stream and every bucket to a cluster and to
	// servers with all of these tags. Start-up checks that what exists
	// matches this section and reports every difference rather than
	// changing it; trailkeeper fleet check --apply makes the change.
	Placement Placement `yaml:"placement"`
}

// Placement of replicas in a NATS cluster (or super-cluster).
type Placement struct {
	Cluster string   `yaml:"cluster"` // a cluster's name; empty: any
	Tags    []string `yaml:"tags"`    // server tags every replica's server must have
}

// Checkpoint configures where cursors are saved.
type Checkpoint struct {
	Store  string   `yaml:"store"`  // kv (default), file or memory
	Bucket string   `yaml:"bucket"` // kv bucket name
	Dir    FilePath `yaml:"dir"`    // file store folder (default: <data_dir>/checkpoints)
}

// Pipeline tunes the per-source loop.
type Pipeline struct {
	// RetryInitial and RetryMax bound the backoff of failed polls,
	// publishes and cursor saves (each is retried on the same cursor).
	RetryInitial    time.Duration `yaml:"retry_initial"`
	RetryMax        time.Duration `yaml:"retry_max"`        // the longest wait between retries
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"` // how long a stop waits for the page in flight
}

// HTTP configures the metrics and health endpoint.
type HTTP struct {
	Listen string `yaml:"listen"` // empty disables it
	// APIToken guards the query API and the web page. It is required when
	// Listen is not a loopback address: who changed what is sensitive.
	// The run registry's write API has its own, correlation.api_token.
	APIToken Secret `yaml:"api_token"`
	// ReadTimeout bounds reading one request, body included: a client
	// that sends slowly is cut off then.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a kept-alive connection that sends nothing.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections caps the connections served at once; more wait to be
	// accepted.
	MaxConnections int `yaml:"max_connections"`
	// MaxBodyBytes refuses a larger request body (413) before reading it.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// SourceBase is what every source has. Collector configs embed it inline.
type SourceBase struct {
	Name         string        `yaml:"name"`          // unique; names its cursor, metrics and logs
	Type         string        `yaml:"type"`          // the collector, one of the types below
	PollInterval time.Duration `yaml:"poll_interval"` // how long to wait after a source is caught up
}

// Base returns the common fields; it lets Source.Settings be any collector
// config that embeds SourceBase.
func (b *SourceBase) Base() *SourceBase { return b }

// SourceConfig is a collector's typed config.
type SourceConfig interface {
	Base() *SourceBase
	Validate() error
}

// SourceTypes knows the collector configs. The collectors registry
// implements it; config does not import the collectors.
type SourceTypes interface {
	// NewSourceConfig returns the defaults of a source of type typ, or false
	// if no collector has that type.
	NewSourceConfig(typ string) (SourceConfig, bool)
	// Types lists the known types, for messages.
	Types() []string
}

// Source is one entry of sources: the collector's own config.
type Source struct {
	Settings SourceConfig
}

// UnmarshalYAML does nothing: the type decides the schema, so Parse decodes
// each entry into its collector's config in a pass of its own.
func (s *Source) UnmarshalYAML(*yaml.Node) error { return nil }

// Default returns the built-in configuration; user YAML is decoded over it.
func Default() *Config {
	return &Config{
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "text"},
		NATS: NATS{
			Embedded:     Embedded{Host: "127.0.0.1", Port: 4222, MaxPayload: 8 << 20, MaxStore: 1 << 40},
			SyncInterval: time.Second,
		},
		Stream:     Stream{Name: "AUDIT", DuplicateWindow: 2 * time.Hour, Replicas: 1},
		Checkpoint: Checkpoint{Store: "kv", Bucket: "trailkeeper-cursors"},
		Pipeline:   Pipeline{RetryInitial: time.Second, RetryMax: 5 * time.Minute, ShutdownTimeout: 15 * time.Second},
		HTTP: HTTP{Listen: "127.0.0.1:9464", ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
			MaxConnections: 256, MaxBodyBytes: 1 << 20},
		Correlate: Correlate{Bucket: "trailkeeper-runs", DriftGrace: 30 * time.Minute},
		Fleet:     Fleet{LeaseTTL: 15 * time.Second, Bucket: "trailkeeper-fleet"},
		Disk:      Disk{MinFree: 256 << 20, CheckInterval: 2 * time.Second},
		Archive:   Archive{SegmentBytes: 64 << 20, SegmentAge: time.Minute, S3: ArchiveS3{Mode: "COMPLIANCE", Retention: 7 * 365 * 24 * time.Hour}},
	}
}

// Load reads, substitutes, decodes and validates a config file. The error,
// if any, is Problems: every problem in the file, each with path and line.
func Load(path string, types SourceTypes) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path, types)
}

// Parse is Load on bytes; file names the source in messages and anchors
// relative ${file:…} references.
func Parse(data []byte, file string, types SourceTypes) (*Config, error) {
	d := &decoder{file: file, lines: map[string]int{}, substituted: map[*yaml.Node]bool{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{{File: file, Line: yamlErrLine(err), Msg: err.Error()}}
	}
	cfg := Default()
	if len(root.Content) > 0 {
		d.substitute(&root, "", filepath.Dir(file))
		d.check(&root, reflect.TypeOf(cfg).Elem(), "")
		// Sources are checked even when the rest has problems, so that
		// one run reports everything.
		var settings []SourceConfig
		for i, n := range sourceNodes(&root) {
			settings = append(settings, d.decodeSource(n, fmt.Sprintf("sources[%d]", i), types))
		}
		// Decode what decodes even when some of it does not (yaml.v3 fills
		// every field it can), so that validation reports its problems in
		// the same run; a field that did not decode keeps its default.
		structural := len(d.problems)
		if err := root.Decode(cfg); err != nil && structural == 0 {
			d.add(&root, "", "%v", err)
		}
		if len(cfg.Sources) == len(settings) {
			for i := range cfg.Sources {
				cfg.Sources[i].Settings = settings[i]
			}
		} else {
			cfg.Sources = nil // the list itself did not decode: reported above
		}
		resolvePaths(reflect.ValueOf(cfg), filepath.Dir(file))
	}
	reported := map[string]bool{}
	for _, p := range d.problems {
		reported[p.Path] = true
	}
	for _, e := range flatten(cfg.Validate()) {
		var fe *FieldError
		switch {
		case errors.As(e, &fe) && !reported[fe.Path]:
			d.problems = append(d.problems, Problem{File: file, Line: d.lineOf(fe.Path), Path: fe.Path, Msg: fe.Msg})
		case fe == nil && e != nil:
			d.problems = append(d.problems, Problem{File: file, Msg: e.Error()})
		}
	}
	if len(d.problems) > 0 {
		return nil, d.problems.sorted()
	}
	return cfg, nil
}

// sourceNodes returns the entries of the top-level sources list.
func sourceNodes(root *yaml.Node) []*yaml.Node {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "sources" && m.Content[i+1].Kind == yaml.SequenceNode {
			return m.Content[i+1].Content
		}
	}
	return nil
}

// decodeSource checks and decodes one source entry into its collector's
// typed config; nil when it has problems (they are recorded).
func (d *decoder) decodeSource(n *yaml.Node, path string, types SourceTypes) SourceConfig {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil // reported by check
	}
	var typ *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			typ = n.Content[i+1]
		}
	}
	if typ == nil || typ.Value == "" {
		d.add(n, path+".type", "missing (one of: %s)", strings.Join(types.Types(), ", "))
		return nil
	}
	sc, ok := types.NewSourceConfig(typ.Value)
	if !ok {
		d.add(typ, path+".type", "unknown source type %q (one of: %s)", typ.Value, strings.Join(types.Types(), ", "))
		return nil
	}
	before := len(d.problems)
	d.check(n, reflect.TypeOf(sc), path)
	if len(d.problems) > before {
		return nil
	}
	if err := n.Decode(sc); err != nil {
		d.add(n, path, "%v", err)
		return nil
	}
	return sc
}

// natsName is what JetStream accepts as a stream or bucket name.
var natsName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate reports every problem, joined; each is a *FieldError.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) { errs = append(errs, Errorf(path, format, args...)) }
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, not %q", c.Log.Format)
	}
	n := c.NATS
	if n.URL == "" {
		if net.ParseIP(n.Embedded.Host) == nil && n.Embedded.Host != "localhost" {
			bad("nats.embedded.host", "must be an IP address, not %q", n.Embedded.Host)
		}
		if n.Embedded.Port < -1 || n.Embedded.Port > 65535 {
			bad("nats.embedded.port", "must be -1 (any free port), 0 (no listener) or a port number, not %d", n.Embedded.Port)
		}
		if n.Embedded.MaxPayload < 1<<20 || n.Embedded.MaxPayload > 64<<20 {
			bad("nats.embedded.max_payload", "must be between 1 MiB and 64 MiB")
		}
		for _, k := range []struct{ path, v string }{{"nats.creds_file", string(n.CredsFile)}, {"nats.nkey_file", string(n.NKeyFile)}, {"nats.user", n.User}, {"nats.tls.ca_file", string(n.TLS.CAFile)}} {
			if k.v != "" {
				bad(k.path, "is only used with nats.url")
			}
		}
	}
	if n.SyncInterval < 0 {
		bad("nats.sync_interval", "must not be negative")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls", "cert_file and key_file go together")
	}
	if n.Password != "" && n.User == "" {
		bad("nats.password", "needs nats.user")
	}
	auth := 0
	for _, set := range []bool{n.CredsFile != "", n.NKeyFile != "", n.User != "", n.Token != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		bad("nats", "use one of creds_file, nkey_file, user/password or token")
	}
	for _, f := range []struct {
		path string
		v    FilePath
	}{{"nats.creds_file", n.CredsFile}, {"nats.nkey_file", n.NKeyFile}, {"nats.tls.ca_file", n.TLS.CAFile}, {"nats.tls.cert_file", n.TLS.CertFile}, {"nats.tls.key_file", n.TLS.KeyFile}} {
		if f.v != "" {
			if _, err := os.Stat(string(f.v)); err != nil {
				bad(f.path, "%v", errWithoutPath(err))
			}
		}
	}
	if !natsName.MatchString(c.Correlate.Bucket) {
		bad("correlation.bucket", "must be letters, digits, _ or -")
	}
	if c.Correlate.DriftGrace < time.Second || c.Correlate.DriftGrace > 24*time.Hour {
		bad("correlation.drift_grace", "must be between 1s and 24h")
	}
	if t := c.Correlate.APIToken; t != "" && len(t) < 16 {
		bad("correlation.api_token", "must be at least 16 characters")
	}
	if c.Archive.Dir != "" && c.Archive.S3.Bucket != "" {
		bad("archive.s3.bucket", "use archive.dir or archive.s3, not both")
	}
	if c.Archive.S3.Mode != "COMPLIANCE" && c.Archive.S3.Mode != "GOVERNANCE" {
		bad("archive.s3.mode", "must be COMPLIANCE or GOVERNANCE, not %q", c.Archive.S3.Mode)
	}
	if c.Archive.S3.Retention < 24*time.Hour {
		bad("archive.s3.retention", "must be at least 24h")
	}
	if c.Archive.KeyFile != "" && c.Archive.Key != "" {
		bad("archive.key", "use key_file or key, not both")
	}
	if c.Archive.SegmentBytes < 1<<10 || c.Archive.SegmentBytes > 1<<30 {
		bad("archive.segment_bytes", "must be between 1 KiB and 1 GiB")
	}
	if c.Archive.SegmentAge < 100*time.Millisecond || c.Archive.SegmentAge > time.Hour {
		bad("archive.segment_age", "must be between 100ms and 1h")
	}
	if !natsName.MatchString(c.Stream.Name) {
		bad("stream.name", "must be letters, digits, _ or -")
	}
	if c.Stream.DuplicateWindow < time.Minute {
		bad("stream.duplicate_window", "must be at least 1m: it must cover the collectors' re-poll overlap")
	}
	if c.Stream.MaxAge != 0 && c.Stream.MaxAge < c.Stream.DuplicateWindow {
		bad("stream.max_age", "must be 0 (keep forever) or at least the duplicate window")
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		bad("stream.replicas", "must be between 1 and 5")
	}
	switch c.Checkpoint.Store {
	case "kv":
		if !natsName.MatchString(c.Checkpoint.Bucket) {
			bad("checkpoint.bucket", "must be letters, digits, _ or -")
		}
	case "file", "memory":
	default:
		bad("checkpoint.store", "must be kv, file or memory, not %q", c.Checkpoint.Store)
	}
	p := c.Pipeline
	if p.RetryInitial <= 0 {
		bad("pipeline.retry_initial", "must be positive")
	}
	if p.RetryMax < p.RetryInitial {
		bad("pipeline.retry_max", "must be at least retry_initial")
	}
	if p.ShutdownTimeout <= 0 {
		bad("pipeline.shutdown_timeout", "must be positive")
	}
	if c.HTTP.Listen != "" {
		if host, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "must be host:port, not %q", c.HTTP.Listen)
		} else if !c.Index.Disabled && c.HTTP.APIToken == "" && !Loopback(host) {
			bad("http.api_token", "required when http.listen (%s) is not a loopback address: the query API and web page show who changed what", c.HTTP.Listen)
		}
	}
	for _, t := range []struct {
		path string
		d    time.Duration
	}{{"http.read_timeout", c.HTTP.ReadTimeout}, {"http.write_timeout", c.HTTP.WriteTimeout}, {"http.idle_timeout", c.HTTP.IdleTimeout}} {
		if t.d <= 0 {
			bad(t.path, "must be positive")
		}
	}
	if c.Disk.MinFree < 0 {
		bad("disk.min_free", "must not be negative")
	}
	if c.Disk.CheckInterval <= 0 {
		bad("disk.check_interval", "must be positive")
	}
	if c.NATS.Embedded.MaxStore < 1<<20 {
		bad("nats.embedded.max_store", "must be at least 1 MiB (1048576)")
	}
	if c.HTTP.MaxConnections < 1 {
		bad("http.max_connections", "must be at least 1")
	}
	if c.HTTP.MaxBodyBytes < 1 {
		bad("http.max_body_bytes", "must be at least 1")
	}
	if t := c.HTTP.APIToken; t != "" && len(t) < 16 {
		bad("http.api_token", "must be at least 16 characters")
	}
	if c.Index.Retention < 0 || c.Index.Retention > 0 && c.Index.Retention < time.Hour {
		bad("index.retention", "must be 0 (keep everything) or at least 1h")
	}
	errs = append(errs, c.validateFleet()...)
	names := map[string]int{}
	for i, s := range c.Sources {
		path := fmt.Sprintf("sources[%d]", i)
		if s.Settings == nil {
			continue
		}
		b := s.Settings.Base()
		switch prev, dup := names[b.Name]; {
		case !sourceName.MatchString(b.Name):
			bad(path+".name", "must be 1-63 of a-z, 0-9, _ and -, starting with a letter or digit, not %q", b.Name)
		case dup:
			bad(path+".name", "%q is already the name of sources[%d]", b.Name, prev)
		default:
			names[b.Name] = i
		}
		if b.PollInterval <= 0 {
			bad(path+".poll_interval", "must be positive")
		}
		if err := s.Settings.Validate(); err != nil {
			errs = append(errs, Prefix(path, err))
		}
	}
	return errors.Join(errs...)
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	var l int
	fmt.Sscan(m[1], &l)
	return l
}

// FilePath is a path in the config. A relative one is taken relative to
// the config file's folder, so a config means the same from any working
// directory.
type FilePath string

var filePathType = reflect.TypeFor[FilePath]()

// resolvePaths makes every relative FilePath in v relative to base.
func resolvePaths(v reflect.Value, base string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			resolvePaths(v.Elem(), base)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				resolvePaths(v.Field(i), base)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			resolvePaths(v.Index(i), base)
		}
	case reflect.String:
		if v.Type() == filePathType && v.CanSet() {
			if p := v.String(); p != "" && !filepath.IsAbs(p) {
				v.SetString(filepath.Join(base, p))
			}
		}
	}
}

// Loopback reports whether host (of a listen address) only accepts
// connections from this machine.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IndexPath is where the change index lives.
func (c *Config) IndexPath() string {
	if c.Index.Path != "" {
		return string(c.Index.Path)
	}
	return filepath.Join(string(c.DataDir), "index.db")
}

var memberName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) validateFleet() []error {
	var errs []error
	bad := func(path, format string, args ...any) { errs = append(errs, Errorf(path, format, args...)) }
	f := c.Fleet
	if f.Name != "" && !memberName.MatchString(f.Name) {
		bad("fleet.name", "must be 1-64 letters, digits, _ or -, not %q", f.Name)
	}
	if f.LeaseTTL < 3*time.Second || f.LeaseTTL > 5*time.Minute {
		bad("fleet.lease_ttl", "must be between 3s and 5m")
	}
	if !natsName.MatchString(f.Bucket) {
		bad("fleet.bucket", "must be letters, digits, _ or -")
	}
	for i, tag := range c.Stream.Placement.Tags {
		if tag == "" {
			bad(fmt.Sprintf("stream.placement.tags[%d]", i), "must not be empty")
		}
	}
	if !f.Enabled {
		return errs
	}
	if c.NATS.URL == "" {
		bad("fleet.enabled", "needs nats.url: the daemons of a fleet share one NATS cluster")
	}
	if c.Checkpoint.Store != "kv" {
		bad("checkpoint.store", "must be kv in a fleet: the daemons share the cursors, and only the kv store fences a stale writer")
	}
	if (c.Archive.Dir != "" || c.Archive.S3.Bucket != "") && c.Archive.Key == "" && c.Archive.KeyFile == "" {
		bad("archive.key_file", "required in a fleet (or archive.key): the archiver moves between daemons, and every one must sign with the same key")
	}
	return errs
}

// RedactURLs returns a NATS server list (comma-separated URLs) with the
// password of any user info replaced, for messages and logs.
func RedactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		parts[i] = p
		if u, err := url.Parse(p); err == nil && u.User != nil {
			if _, has := u.User.Password(); !has {
				u.User = url.User("xxxxx") // a token alone, as nats://token@host
			}
			parts[i] = u.Redacted()
		} else if err != nil && strings.Contains(p, "@") {
			parts[i] = "xxxxx@" + p[strings.LastIndexByte(p, '@')+1:]
		}
	}
	return strings.Join(parts, ",")
}
