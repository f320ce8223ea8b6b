// Package daemon wires config into running parts and owns their lifecycle:
// start consumers before producers (stream, then checkpoints, then
// pipelines), stop producers before consumers (pipelines finish their page,
// then NATS drains, then the embedded server stops).
package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	tkcollectors "github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/internal/diskguard"
	"github.com/trailkeeper/trailkeeper/internal/embednats"
	"github.com/trailkeeper/trailkeeper/internal/fleet"
	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/lease"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// Settings is what the caller passes in besides the config.
type Settings struct {
	Logger   *slog.Logger
	Registry registry.Registry
	// OnReady, if set, is called once everything has started, with the
	// addresses a client needs (for tests and the start-up log).
	OnReady func(Addrs)
	// NATSOptions are added to the connection's options (a custom dialer,
	// say, for tests that cut a daemon off).
	NATSOptions []nats.Option
}

// Addrs are where the daemon can be reached.
type Addrs struct {
	NATS string // the embedded server's client URL, or the external URL
	HTTP string
}

// Run starts everything, runs until ctx ends, then stops in order. It
// returns nil after a clean stop.
func Run(ctx context.Context, cfg *config.Config, set Settings) error {
	log := set.Logger
	if err := os.MkdirAll(string(cfg.DataDir), 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	// A reconnect wakes every publish and cursor save waiting out a
	// back-off, so that a broker restart costs seconds, not minutes.
	reconnected := pipeline.NewWake()
	conn, err := connectPatiently(ctx, cfg, log, append([]nats.Option{nats.ReconnectHandler(func(nc *nats.Conn) {
		log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		reconnected.Fire()
	})}, set.NATSOptions...)...)
	if err != nil {
		return err
	}
	defer conn.close(log)

	js, err := natsjs.New(conn.nc, jetstream.Options()...)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	lay, err := ensureLayout(ctx, cfg, js, false)
	if err != nil {
		return err
	}
	stream := lay.stream
	var store checkpoint.Store = lay.store
	if lay.store == nil {
		if store, err = openStore(cfg); err != nil {
			return err
		}
	}
	pipes := &pipelines{byKey: map[string]*pipeline.Pipeline{}}
	var mem *fleet.Member
	member := ""
	if cfg.Fleet.Enabled {
		if member, err = memberName(cfg.Fleet); err != nil {
			return err
		}
		mem, err = fleet.Join(ctx, fleet.Settings{JS: js, Name: member, TTL: cfg.Fleet.LeaseTTL, Bucket: cfg.Fleet.Bucket,
			Replicas: cfg.Stream.Replicas, Placement: placement(cfg), HTTP: cfg.HTTP.Listen, Version: httpapi.Version, Logger: log,
			Progress: pipes.progress})
		if err != nil {
			return err
		}
		log.Info("joined the fleet", "member", member, "lease_ttl", cfg.Fleet.LeaseTTL)
	}
	var solo *fleet.Solo
	if !cfg.Fleet.Enabled && cfg.NATS.URL != "" {
		// Anyone can reach this cluster: make sure no other daemon polls
		// the same sources (a second daemon started by mistake, or a
		// fleet), which would double every API call.
		if member, err = memberName(cfg.Fleet); err != nil {
			return err
		}
		solo, err = fleet.JoinSolo(ctx, fleet.Settings{JS: js, Name: member, TTL: cfg.Fleet.LeaseTTL, Bucket: cfg.Fleet.Bucket,
			Replicas: cfg.Stream.Replicas, Placement: placement(cfg), Logger: log})
		if err != nil {
			return err
		}
		member = "" // not a fleet member: the index keeps its usual consumer
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dups := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trailkeeper_publish_duplicates_total",
		Help: "Messages the stream dropped as duplicates (re-polled overlap, restarts).",
	})
	reg.MustRegister(dups, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "trailkeeper_records_repaired_total",
		Help: "Azure records whose malformed JSON (single quotes, raw newlines) was repaired before mapping.",
	}, func() float64 { return float64(normalize.Repairs()) }))
	metrics := pipeline.NewMetrics(reg)
	pub := jetstream.NewPublisher(js, cfg.Stream.Name)
	pub.OnDuplicate = func(n int) { dups.Add(float64(n)) }

	checkpointDelay := cfg.NATS.SyncInterval
	if cfg.NATS.URL == "" && cfg.NATS.Embedded.SyncAlways {
		checkpointDelay = 0
	}
	runs, err := jetstream.Patiently(ctx, func() (*correlate.Registry, error) { return correlate.LoadRegistry(ctx, js, lay.runs) })
	if err != nil {
		return err
	}
	correlator := &correlate.Correlator{Registry: runs, Logger: log}
	var routes []httpapi.Route
	if cfg.Correlate.APIToken != "" {
		routes = append(routes, httpapi.Route{Pattern: "/v1/", Handler: correlate.Handler(runs, string(cfg.Correlate.APIToken), nil)})
	}
	if s := cfg.Correlate.HCPWebhookSecret; s != "" {
		routes = append(routes, httpapi.Route{Pattern: "POST /v1/webhooks/hcp-terraform", Handler: correlate.HCPWebhook(runs, string(s))})
	}
	// A full disk pauses ingestion (no new page) until space is freed.
	guard := diskguard.New(diskguard.Settings{Dirs: diskDirs(cfg), MinFree: uint64(cfg.Disk.MinFree), Every: cfg.Disk.CheckInterval,
		Logger: log, Registerer: reg, Recover: func() {
			if e := conn.embedded; e != nil {
				if did, err := e.RecoverJetStream(); err != nil {
					log.Error("could not restart the embedded broker's JetStream after a full disk", "err", err)
				} else if did {
					log.Warn("restarted the embedded broker's JetStream, which a full disk had broken")
				}
			}
		}})
	health := &tkcollectors.Health{}
	var units []fleet.Unit // one per source stream, for the fleet
	var closers []tkcollectors.Collector
	var local []*pipeline.Pipeline
	for _, src := range cfg.Sources {
		b := src.Settings.Base()
		f, ok := set.Registry.Factory(b.Type)
		if !ok {
			return fmt.Errorf("source %s: unknown type %q", b.Name, b.Type)
		}
		srcLog := log.With("source", b.Name)
		streams, err := f.Create(ctx, tkcollectors.Settings{Logger: srcLog, DataDir: string(cfg.DataDir), Registerer: reg, Health: health}, src.Settings)
		if err != nil {
			return fmt.Errorf("source %s: %w", b.Name, err)
		}
		for _, st := range streams {
			closers = append(closers, st.Collector)
			set := pipeline.Settings{
				Source:          b.Name,
				Stream:          st,
				Store:           store,
				Sink:            pub,
				Correlator:      correlator,
				Logger:          log,
				Metrics:         metrics,
				PollInterval:    b.PollInterval,
				CheckpointDelay: checkpointDelay,
				RetryInitial:    cfg.Pipeline.RetryInitial,
				RetryMax:        cfg.Pipeline.RetryMax,
				ShutdownTimeout: cfg.Pipeline.ShutdownTimeout,
				Reconnected:     reconnected,
				Hold:            guard.Wait,
			}
			if !cfg.Fleet.Enabled {
				p := pipeline.New(set)
				pipes.add(p)
				local = append(local, p)
				continue
			}
			units = append(units, fleet.Unit{Key: st.Key, Source: b.Name, Run: func(ctx context.Context, l *lease.Lease) error {
				// The cursor is claimed under the lease: an older owner
				// that wakes up can no longer save over it.
				claimed, err := store.(*checkpoint.KV).Claim(ctx, st.Key)
				if err != nil {
					return err
				}
				set := set
				set.Store, set.Gate = claimed, l.Valid
				p := pipeline.New(set)
				pipes.add(p)
				defer pipes.remove(p)
				return p.Run(ctx)
			}})
		}
	}

	// The archiver runs on one daemon: here, or on whichever holds the
	// fleet's archiver role.
	var archiver atomic.Pointer[worm.Archiver]
	var archiving *archiveRunner
	var firstArchiver *worm.Archiver
	ready := func() ([]string, error) {
		if !conn.nc.IsConnected() {
			return health.Problems(), errors.New("not connected to NATS")
		}
		var errs []error
		for _, p := range pipes.list() {
			st := p.Status()
			// One failure is weather; several intervals of it is a problem.
			if !st.FailingSince.IsZero() && time.Since(st.FailingSince) > 3*max(p.PollInterval(), 10*time.Second) {
				errs = append(errs, fmt.Errorf("failing since %s: %w", st.FailingSince.Format(time.RFC3339), st.LastError))
			}
		}
		if err := guard.Problem(); err != nil {
			errs = append(errs, err)
		}
		if archiving != nil {
			var p worm.Progress
			if a := archiver.Load(); a != nil {
				p = a.Progress()
			}
			if err := archiving.Problem(p); err != nil {
				errs = append(errs, err)
			}
		}
		return health.Problems(), errors.Join(errs...)
	}

	var archive worm.Store
	var newArchiver func(context.Context) (*worm.Archiver, error)
	if cfg.Archive.Dir != "" || cfg.Archive.S3.Bucket != "" {
		if archive, err = openArchiveStore(ctx, cfg); err != nil {
			return err
		}
		signer, err := archiveSigner(cfg, log)
		if err != nil {
			return err
		}
		newArchiver = func(ctx context.Context) (*worm.Archiver, error) {
			a := cfg.Archive
			return worm.NewArchiver(ctx, worm.Settings{
				JS: js, NC: conn.nc, Stream: cfg.Stream.Name, Store: archive,
				Signer: signer, Origin: signer.Name(), SegmentBytes: a.SegmentBytes, SegmentAge: a.SegmentAge, Logger: log,
				Settle: checkpointDelay,
			})
		}
		archiving = newArchiveRunner(reg, log, newArchiver, func(a *worm.Archiver) { archiver.Store(a) })
		if !cfg.Fleet.Enabled {
			// Opened here, so that an archive that cannot be read stops
			// the start-up with its error.
			if firstArchiver, err = newArchiver(ctx); err != nil {
				return err
			}
			archiver.Store(firstArchiver)
		} else {
			units = append(units, fleet.Unit{Key: roleArchiver, Source: "archiver", Run: func(ctx context.Context, _ *lease.Lease) error {
				// A paused old archiver cannot fork the log: every object
				// is write-once, so its next segment fails to store.
				return archiving.Run(ctx, nil)
			}})
		}
	}
	var follower *index.Follower
	if !cfg.Index.Disabled {
		ix, err := index.Open(ctx, cfg.IndexPath())
		if err != nil {
			return err
		}
		defer ix.Close()
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trailkeeper_index_sequence",
			Help: "The last stream sequence the on-call index holds (its lag is the stream's last sequence minus this).",
		}, func() float64 { n, _ := ix.LastSeq(context.Background()); return float64(n) }))
		follower = &index.Follower{Index: ix, JS: js, Stream: cfg.Stream.Name, Archive: archive, Retention: cfg.Index.Retention, Logger: log}
		if cfg.Fleet.Enabled {
			// Every daemon keeps its own index, so each needs its own
			// consumer: a shared one would split the stream between them.
			follower.Consumer = "INDEX_" + member
		}
		q := &httpapi.Query{Index: ix, Runs: runs, Events: stream, Archive: archive, Token: string(cfg.HTTP.APIToken)}
		routes = append(routes, q.Routes()...)
	}

	if newArchiver != nil {
		progress := func() worm.Progress {
			if a := archiver.Load(); a != nil {
				return a.Progress()
			}
			return worm.Progress{}
		}
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "trailkeeper_archive_leaves_total",
			Help: "Messages in the archive's log (0 on a fleet's daemons that never held the archiver role).",
		}, func() float64 { return float64(progress().Leaves) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trailkeeper_archive_sequence",
			Help: "The last stream sequence archived (its lag is the stream's last sequence minus this).",
		}, func() float64 { return float64(progress().LastSeq) }))
	}
	var lastStreamSeq atomic.Uint64
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trailkeeper_stream_sequence",
		Help: "The stream's last sequence, for the archive's and the index's lag.",
	}, func() float64 {
		// While NATS is away the last value stands: a drop to 0 would
		// read as a reset and break every lag computed from it.
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if info, err := stream.Info(c); err == nil {
			lastStreamSeq.Store(info.State.LastSeq)
		}
		return float64(lastStreamSeq.Load())
	}))
	driftFindings := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailkeeper_drift_findings_total",
		Help: "Drift findings published, by drift type.",
	}, []string{"type"})
	reg.MustRegister(driftFindings)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return guard.Run(gctx) })
	if firstArchiver != nil {
		g.Go(func() error { return archiving.Run(gctx, firstArchiver) })
	}
	if follower != nil {
		g.Go(func() error { return follower.Run(gctx) })
	}
	detector := &correlate.Detector{JS: js, Stream: cfg.Stream.Name, Correlator: correlator, Sink: pub, Grace: cfg.Correlate.DriftGrace, Logger: log,
		OnFinding: func(typ string) { driftFindings.WithLabelValues(typ).Inc() }}
	g.Go(func() error { return detector.Run(gctx) })
	if mem != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trailkeeper_fleet_units",
			Help: "Fleet units (source streams, the archiver role) this daemon holds the lease of and runs.",
		}, func() float64 { return float64(len(mem.Running())) }))
		routes = append(routes, httpapi.Route{Pattern: "GET /v1/fleet", Handler: httpapi.RequireToken(string(cfg.HTTP.APIToken), fleet.Handler(mem.KV()))})
	}
	addrs := Addrs{NATS: conn.url}
	if cfg.HTTP.Listen != "" {
		h := cfg.HTTP
		srv, err := httpapi.Listen(h.Listen, httpapi.Handler(reg, ready, string(h.APIToken), routes...), log, httpapi.Limits{
			ReadTimeout: h.ReadTimeout, WriteTimeout: h.WriteTimeout, IdleTimeout: h.IdleTimeout,
			MaxConnections: h.MaxConnections, MaxBodyBytes: h.MaxBodyBytes,
		})
		if err != nil {
			return err
		}
		addrs.HTTP = srv.Addr()
		if mem != nil {
			mem.SetHTTP(addrs.HTTP)
		}
		g.Go(func() error { return srv.Run(gctx) })
	}
	for _, p := range local {
		g.Go(func() error { return p.Run(gctx) })
	}
	if solo != nil {
		g.Go(func() error { return solo.Run(gctx) })
	}
	if mem != nil {
		g.Go(func() error { return runs.Watch(gctx) })
		g.Go(func() error { return mem.Run(gctx, units) })
	}
	log.Info("trailkeeper running", "nats", addrs.NATS, "http", addrs.HTTP, "stream", cfg.Stream.Name, "streams", len(local)+len(units), "fleet", member)
	if set.OnReady != nil {
		set.OnReady(addrs)
	}
	err = g.Wait()
	if err != nil && ctx.Err() == nil {
		log.Error("trailkeeper stopping on an error", "err", err)
	} else {
		log.Info("trailkeeper stopping")
	}
	for _, c := range closers {
		if c, ok := c.(io.Closer); ok {
			if cerr := c.Close(); cerr != nil {
				log.Warn("closing a collector", "err", cerr)
			}
		}
	}
	return err
}

// Reindex rebuilds the change index from the stream, and from the archive
// for what the stream no longer holds (or, with fromArchive, for all the
// archive holds), into a new file that replaces the old one when done.
// The daemon must be stopped: it holds the index (and, embedded, the
// stream's store).
func Reindex(ctx context.Context, cfg *config.Config, fromArchive bool, log *slog.Logger) (index.Stats, error) {
	conn, err := connect(ctx, cfg, log)
	if err != nil {
		return index.Stats{}, err
	}
	defer conn.close(log)
	js, err := natsjs.New(conn.nc)
	if err != nil {
		return index.Stats{}, fmt.Errorf("jetstream: %w", err)
	}
	var archive worm.Store
	if cfg.Archive.Dir != "" || cfg.Archive.S3.Bucket != "" {
		if archive, err = openArchiveStore(ctx, cfg); err != nil {
			return index.Stats{}, err
		}
	} else if fromArchive {
		return index.Stats{}, errors.New("no archive is configured")
	}
	path := cfg.IndexPath()
	tmp := path + ".rebuild"
	if err := index.Remove(tmp); err != nil {
		return index.Stats{}, err
	}
	ix, err := index.Open(ctx, tmp)
	if err != nil {
		return index.Stats{}, err
	}
	f := &index.Follower{Index: ix, JS: js, Stream: cfg.Stream.Name, Consumer: "INDEX-REBUILD", Archive: archive, FromArchive: fromArchive, Logger: log}
	err = f.CatchUp(ctx)
	var st index.Stats
	if err == nil {
		st, err = ix.Stats(ctx)
	}
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return index.Stats{}, err
	}
	if err := index.Remove(path); err != nil {
		return index.Stats{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return index.Stats{}, fmt.Errorf("index: %w", err)
	}
	st.Bytes = 0
	if fi, err := os.Stat(path); err == nil {
		st.Bytes = fi.Size()
	}
	return st, nil
}

// archiveSigner loads (or, the first time, creates) the signing key.
func archiveSigner(cfg *config.Config, log *slog.Logger) (note.Signer, error) {
	a := cfg.Archive
	var signer note.Signer
	var err error
	switch {
	case a.Key != "":
		signer, err = worm.ParseSigner(string(a.Key))
	case a.KeyFile != "":
		signer, _, _, err = worm.LoadOrCreateKey(string(a.KeyFile))
	default:
		path := filepath.Join(string(cfg.DataDir), "archive.key")
		if err = os.MkdirAll(string(cfg.DataDir), 0o755); err != nil {
			return nil, err
		}
		var vkey string
		var created bool
		signer, vkey, created, err = worm.LoadOrCreateKey(path)
		if created {
			log.Warn("generated the archive's signing key; keep the verifier key to check the archive", "key_file", path, "verifier_key", vkey)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("archive key: %w", err)
	}
	return signer, nil
}

// openArchiveStore opens the configured archive's backend.
func openArchiveStore(ctx context.Context, cfg *config.Config) (worm.Store, error) {
	a := cfg.Archive
	if a.S3.Bucket != "" {
		s3s, err := worm.NewS3Store(ctx, worm.S3Settings{Bucket: a.S3.Bucket, Prefix: a.S3.Prefix, Region: a.S3.Region,
			EndpointURL: a.S3.EndpointURL, Mode: a.S3.Mode, Retention: a.S3.Retention})
		if err != nil {
			return nil, err
		}
		if err := s3s.CheckLock(ctx, a.S3.AllowUnlocked); err != nil {
			return nil, err
		}
		return s3s, nil
	}
	if err := os.MkdirAll(string(a.Dir), 0o755); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return worm.DirStore{Root: string(a.Dir)}, nil
}

// diskDirs are the folders the daemon writes to.
func diskDirs(cfg *config.Config) []string {
	dirs := []string{string(cfg.DataDir)}
	add := func(d string) {
		if d != "" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	add(string(cfg.Archive.Dir))
	if cfg.Checkpoint.Store == "file" {
		add(string(cfg.Checkpoint.Dir))
	}
	if !cfg.Index.Disabled {
		add(filepath.Dir(cfg.IndexPath()))
	}
	return dirs
}

// openStore opens a file or memory cursor store (the kv store is opened
// with the layout).
func openStore(cfg *config.Config) (checkpoint.Store, error) {
	if cfg.Checkpoint.Store == "memory" {
		return checkpoint.NewMemory(), nil
	}
	dir := string(cfg.Checkpoint.Dir)
	if dir == "" {
		dir = filepath.Join(string(cfg.DataDir), "checkpoints")
	}
	return checkpoint.NewFile(dir)
}

// natsConn is the connection, plus the embedded server behind it if any.
type natsConn struct {
	nc       *nats.Conn
	embedded *embednats.Server
	url      string
	once     sync.Once
}

func connect(ctx context.Context, cfg *config.Config, log *slog.Logger, extra ...nats.Option) (*natsConn, error) {
	opts, err := natsOptions(cfg.NATS, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	if cfg.NATS.URL != "" {
		nc, err := nats.Connect(cfg.NATS.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to NATS %s: %w", config.RedactURLs(cfg.NATS.URL), err)
		}
		return &natsConn{nc: nc, url: nc.ConnectedUrlRedacted()}, nil
	}
	e := cfg.NATS.Embedded
	srv, err := embednats.Start(ctx, embednats.Settings{
		StoreDir:     filepath.Join(string(cfg.DataDir), "jetstream"),
		Host:         e.Host,
		Port:         e.Port,
		SyncInterval: cfg.NATS.SyncInterval,
		SyncAlways:   e.SyncAlways,
		MaxPayload:   e.MaxPayload,
		MaxStore:     e.MaxStore,
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	nc, err := srv.Connect(opts...)
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	return &natsConn{nc: nc, embedded: srv, url: srv.ClientURL()}, nil
}

// connectPatiently is connect for the daemon: an external broker that is
// not up yet (restarting, or started after the daemon) is waited for, as
// a reconnect would wait for it; a refusal (credentials, TLS) is final.
func connectPatiently(ctx context.Context, cfg *config.Config, log *slog.Logger, extra ...nats.Option) (*natsConn, error) {
	wait := time.Second
	for {
		conn, err := connect(ctx, cfg, log, extra...)
		if err == nil || cfg.NATS.URL == "" || refused(err) {
			return conn, err
		}
		log.Warn("NATS is not reachable yet; waiting for it", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// refused: the broker answered and said no (credentials, TLS), which no
// wait fixes; anything else (refused connections, a broker going down
// mid-handshake: EOF) is weather.
func refused(err error) bool {
	var x509err x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr x509.CertificateInvalidError
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrNkeysNotSupported) || errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) ||
		errors.As(err, &x509err) || errors.As(err, &hostErr) || errors.As(err, &certErr) ||
		strings.Contains(err.Error(), "Authorization Violation")
}

// close drains the connection (pending acks and publishes complete), then
// stops the embedded server, which flushes its store.
func (c *natsConn) close(log *slog.Logger) {
	c.once.Do(func() {
		closed := make(chan struct{})
		c.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := c.nc.Drain(); err != nil {
			c.nc.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				log.Warn("NATS drain timed out")
				c.nc.Close()
			}
		}
		if c.embedded != nil {
			c.embedded.Shutdown()
		}
	})
}

// natsOptions turns the config into connection options; the same options
// serve the embedded and the external server.
func natsOptions(c config.NATS, log *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("trailkeeper"),
		nats.MaxReconnects(-1), // an audit daemon waits for its broker
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", "err", err) }),
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(string(c.CredsFile)))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(string(c.NKeyFile))
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password.Value()))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token.Value()))
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(string(c.TLS.CAFile)))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(string(c.TLS.CertFile), string(c.TLS.KeyFile)))
	}
	return opts, nil
}
