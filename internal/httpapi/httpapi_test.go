package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	}, "ready-token-0123456789"))
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
	srv, err := httpapi.Listen("127.0.0.1:0", httpapi.Handler(prometheus.NewRegistry(), func() ([]string, error) { return nil, nil }, ""), slog.New(slog.DiscardHandler), httpapi.Limits{})
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
	ln, _ := httpapi.Listen("127.0.0.1:0", http.NotFoundHandler(), slog.New(slog.DiscardHandler), httpapi.Limits{})
	defer ln.Run(canceled())
	if _, err := httpapi.Listen(ln.Addr(), http.NotFoundHandler(), slog.New(slog.DiscardHandler), httpapi.Limits{}); err == nil {
		t.Error("second listen on the same port succeeded")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Off loopback, /readyz tells everyone its status but its details (account
// ids, raw errors) only with the token.
func TestReadyzDetailsNeedTheTokenOffLoopback(t *testing.T) {
	const token = "ready-token-0123456789"
	h := httpapi.Handler(prometheus.NewRegistry(), func() ([]string, error) {
		return []string{"trail 123456789012: digest chain broken"}, errors.New("source x failing: 123456789012")
	}, token)
	for _, tc := range []struct {
		remote, auth string
		details      bool
	}{
		{"127.0.0.1:5000", "", true},
		{"[::1]:5000", "", true},
		{"192.0.2.7:5000", "", false},
		{"192.0.2.7:5000", "Bearer wrong-token-0123456789", false},
		{"192.0.2.7:5000", "Bearer " + token, true},
	} {
		r := httptest.NewRequest("GET", "/readyz", nil)
		r.RemoteAddr = tc.remote
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		body := w.Body.String()
		if w.Code != 503 || strings.Contains(body, "123456789012") != tc.details {
			t.Errorf("%s %q: %d %q", tc.remote, tc.auth, w.Code, body)
		}
	}
}

func listen(t *testing.T, lim httpapi.Limits) string {
	t.Helper()
	srv, err := httpapi.Listen("127.0.0.1:0", httpapi.Handler(prometheus.NewRegistry(), func() ([]string, error) { return nil, nil }, "",
		httpapi.Route{Pattern: "POST /echo", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			w.Write(b)
		})}), slog.New(slog.DiscardHandler), lim)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addr()
}

// 200 clients that send a body slowly (or never) are cut off at the read
// timeout, and /healthz answers meanwhile.
func TestSlowClientsCannotHoldTheServer(t *testing.T) {
	const timeout = time.Second
	addr := listen(t, httpapi.Limits{ReadTimeout: timeout, MaxConnections: 256})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nslow")
	}
	start := time.Now()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz with 200 slow clients: %v", err)
	}
	resp.Body.Close()
	t.Logf("healthz answered in %s with 200 slow clients", time.Since(start).Round(time.Millisecond))
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.ReadAll(c) // the server answers or closes, then EOF
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("slow client %d still connected %s after it started", i, time.Since(start))
		}
	}
	t.Logf("200 slow clients closed %s after they started (read timeout %s)", time.Since(start).Round(time.Millisecond), timeout)
}

// A body over the limit is refused by its Content-Length, before the
// client sends it; one without a length is cut at the limit.
func TestBodyLimitCheckedBeforeReading(t *testing.T) {
	addr := listen(t, httpapi.Limits{MaxBodyBytes: 1000})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	chunked, err := http.Post("http://"+addr+"/echo", "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("x", 2000))))
	if err != nil {
		t.Fatal(err)
	}
	chunked.Body.Close()
	if chunked.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit: %d", chunked.StatusCode)
	}
	ok, err := http.Post("http://"+addr+"/echo", "text/plain", strings.NewReader("small"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(ok.Body)
	ok.Body.Close()
	if ok.StatusCode != 200 || string(b) != "small" {
		t.Errorf("a small body: %d %q", ok.StatusCode, b)
	}
}
