package httpapi_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/httpapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "trailkeeper_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Add(3)
	var failing atomic.Bool
	srv := httptest.NewServer(httpapi.Handler(reg, func() ([]string, error) {
		details := []string{"trail/1/us-east-1: digest chain broken"}
		if failing.Load() {
			return details, errors.New("source x failing")
		}
		return details, nil
	}))
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || body != "ready\nwarning: trail/1/us-east-1: digest chain broken\n" {
		t.Errorf("readyz = %d %q", code, body)
	}
	failing.Store(true)
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "source x failing") {
		t.Errorf("readyz when failing = %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/metrics"); code != 200 || !strings.Contains(body, "trailkeeper_test_total 3") {
		t.Errorf("metrics = %d %q", code, body)
	}
}

func TestServerRunStops(t *testing.T) {
	srv, err := httpapi.Listen("127.0.0.1:0", httpapi.Handler(prometheus.NewRegistry(), func() ([]string, error) { return nil, nil }), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	if code, _ := get(t, "http://"+srv.Addr()+"/healthz"); code != 200 {
		t.Error(code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// A taken port fails at Listen, not later.
	ln, _ := httpapi.Listen("127.0.0.1:0", http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	defer ln.Run(canceled())
	if _, err := httpapi.Listen(ln.Addr(), http.NotFoundHandler(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("second listen on the same port succeeded")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
