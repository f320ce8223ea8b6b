// Package httpapi serves trailkeeper's HTTP endpoints: /metrics, /healthz
// and /readyz for now; the run-registry and query APIs join them later.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// ReadyFunc reports nil when the daemon can do its job, or why not, and
// details: problems that need a human while collection goes on (a failed
// integrity check), shown either way.
type ReadyFunc func() (details []string, err error)

// Route is an extra endpoint tree (the run registry API, say).
type Route struct {
	Pattern string // a ServeMux pattern, e.g. "/v1/"
	Handler http.Handler
}

// Handler returns the mux of every endpoint. /readyz's details (account
// ids, raw errors) are shown off loopback only with readyToken, when one
// is set; the status code is for everyone.
func Handler(reg *prometheus.Registry, ready ReadyFunc, readyToken string, routes ...Route) http.Handler {
	mux := http.NewServeMux()
	for _, r := range routes {
		mux.Handle(r.Pattern, r.Handler)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// healthz: the process is alive and serving.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	// readyz: connected to the stream and no source stuck failing.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		details, err := ready()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		show := readyToken == "" || fromLoopback(r) || hasToken(r, readyToken)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			if !show {
				fmt.Fprintln(w, "not ready (details need the API token)")
				return
			}
			fmt.Fprintln(w, "not ready: "+err.Error())
		} else {
			fmt.Fprintln(w, "ready")
		}
		if !show {
			return
		}
		for _, d := range details {
			fmt.Fprintln(w, "warning: "+d)
		}
	})
	return mux
}

// fromLoopback: the request came over a loopback connection.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Limits keep slow or hostile clients from holding the server.
type Limits struct {
	ReadTimeout    time.Duration // one request, body included
	WriteTimeout   time.Duration // one response
	IdleTimeout    time.Duration // a kept-alive connection with nothing to do
	MaxConnections int           // served at once; more wait to be accepted
	MaxBodyBytes   int64         // a larger body is refused before it is read
}

func (l Limits) withDefaults() Limits {
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = 30 * time.Second
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = time.Minute
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 2 * time.Minute
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = 256
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 1 << 20
	}
	return l
}

// limitBody refuses a body over max by its Content-Length, before reading
// a byte of it, and cuts off one that grows past max without saying.
func limitBody(max int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			w.Header().Set("Connection", "close")
			http.Error(w, fmt.Sprintf("request body of %d bytes is over the limit of %d", r.ContentLength, max), http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		h.ServeHTTP(w, r)
	})
}

// Server is the HTTP server of the daemon.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen binds addr now, so that a port conflict fails start-up rather than
// surfacing later.
// Zero limits take their defaults.
func Listen(addr string, h http.Handler, log *slog.Logger, lim Limits) (*Server, error) {
	lim = lim.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	return &Server{ln: netutil.LimitListener(ln, lim.MaxConnections), log: log, srv: &http.Server{
		Handler:           limitBody(lim.MaxBodyBytes, h),
		ReadHeaderTimeout: min(10*time.Second, lim.ReadTimeout),
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("http listening", "addr", s.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
