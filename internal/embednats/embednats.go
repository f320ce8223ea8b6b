// Package embednats runs nats-server with JetStream inside the process. The
// daemon uses it when no external NATS URL is configured, and every test
// that needs a broker uses it too, so the code we ship is the code we test.
package embednats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Settings of the embedded server.
type Settings struct {
	// StoreDir holds the JetStream file store.
	StoreDir string
	// Host and Port of the client listener; Port -1 picks a free port and
	// Port 0 runs without a listener (in-process connections only).
	Host string
	Port int
	// SyncInterval is how often the file store fsyncs (nats-server's
	// default is 2 min; the daemon uses 1 s). SyncAlways fsyncs every write.
	SyncInterval time.Duration
	SyncAlways   bool
	MaxPayload   int32
	// MaxStore caps JetStream's file store; 0 lets nats-server take 75%
	// of the disk's free space at start (tests only: the daemon sets it).
	MaxStore int64
	// ServerName defaults to "trailkeeper".
	ServerName string
	// Logger receives the server's notices and errors; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds start-up; default 10 s.
	ReadyTimeout time.Duration
	// Cluster, if set, joins the server to a cluster of servers (a fleet's
	// tests run three in one process); the daemon's own embedded server
	// never clusters. Tags are the server's placement tags.
	Cluster *Cluster
	Tags    []string
}

// Cluster is how a server routes to its peers.
type Cluster struct {
	Name   string
	Host   string
	Port   int      // of this server's route listener
	Routes []string // every peer's nats-route://host:port (own included is fine)
}

// Server is a running embedded nats-server.
type Server struct {
	ns      *server.Server
	set     Settings
	noSpace *atomic.Bool // a store write failed for lack of space
}

// Start runs the server and waits until it accepts connections.
func Start(ctx context.Context, s Settings) (*Server, error) {
	if s.StoreDir == "" {
		return nil, errors.New("embednats: StoreDir is required")
	}
	opts := &server.Options{
		ServerName:            s.ServerName,
		Host:                  s.Host,
		Port:                  s.Port,
		DontListen:            s.Port == 0,
		JetStream:             true,
		StoreDir:              s.StoreDir,
		SyncInterval:          s.SyncInterval,
		SyncAlways:            s.SyncAlways,
		MaxPayload:            s.MaxPayload,
		JetStreamMaxStore:     s.MaxStore,
		NoSigs:                true, // the daemon owns the signals
		NoSystemAccount:       true,
		DisableShortFirstPing: true,
	}
	if c := s.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
		opts.NoSystemAccount = false // JetStream's cluster needs the system account
		opts.Tags = s.Tags
	}
	if opts.ServerName == "" {
		opts.ServerName = "trailkeeper"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	noSpace := &atomic.Bool{}
	ns.SetLoggerV2(&logAdapter{l: log.With("component", "nats-server"), noSpace: noSpace}, false, false, false)
	ns.Start()
	timeout := s.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s", timeout)
	}
	return &Server{ns: ns, set: s, noSpace: noSpace}, nil
}

// RecoverJetStream starts JetStream again, from the same store, when a
// full disk broke it: nats-server switches JetStream off, or a stream's
// file store keeps its first "no space left" write error and fails every
// later write until it is reopened. Streams, consumers and positions come
// back as after a restart. It does nothing when no write failed.
func (s *Server) RecoverJetStream() (bool, error) {
	enabled := s.ns.JetStreamEnabled()
	if enabled && !s.noSpace.Swap(false) {
		return false, nil
	}
	if enabled {
		if err := s.ns.DisableJetStream(); err != nil {
			return false, fmt.Errorf("embedded nats: stop JetStream: %w", err)
		}
	}
	// MaxMemory 0: nats-server picks it as at start.
	cfg := &server.JetStreamConfig{StoreDir: s.set.StoreDir, MaxStore: s.set.MaxStore, SyncInterval: s.set.SyncInterval, SyncAlways: s.set.SyncAlways}
	if err := s.ns.EnableJetStream(cfg); err != nil && !s.ns.JetStreamEnabled() {
		return false, fmt.Errorf("embedded nats: start JetStream again: %w", err)
	}
	return true, nil
}

// Connect opens an in-process connection (no socket).
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns)}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the listener's URL, or "" when it has none.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Shutdown stops the server and waits until it has stopped; the file store
// is flushed. Safe to call more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// logAdapter forwards nats-server's log, and notes the write errors a
// full disk causes (nats-server reports them only there).
type logAdapter struct {
	l       *slog.Logger
	noSpace *atomic.Bool
}

func (a *logAdapter) Noticef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a *logAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a *logAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a *logAdapter) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "no space left on device") {
		a.noSpace.Store(true)
	}
	a.l.Error(msg)
}
func (a *logAdapter) Debugf(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a *logAdapter) Tracef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
