// Package embednatstest starts a real embedded JetStream server for tests,
// the way nats-server's own tests do: in process, on a temporary store.
package embednatstest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/embednats"
)

// Start runs a server with no listener (Port 0) unless port says otherwise,
// and returns it with an in-process connection. Both are closed when the
// test ends.
func Start(t testing.TB) (*embednats.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	return StartWith(t, embednats.Settings{})
}

// StartWith is Start with settings; StoreDir defaults to a temp dir.
func StartWith(t testing.TB, s embednats.Settings) (*embednats.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	if s.StoreDir == "" {
		s.StoreDir = t.TempDir()
	}
	if s.SyncInterval == 0 {
		s.SyncInterval = time.Second
	}
	srv, err := embednats.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	nc, err := srv.Connect()
	if err != nil {
		srv.Shutdown()
		t.Fatalf("connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		srv.Shutdown()
	})
	return srv, nc, js
}

// StartCluster runs n servers clustered on loopback, each with a client
// listener on a free port, named n1…nN, tagged with their name, in a
// cluster named "tk". They are shut down when the test ends (Shutdown is
// safe to call earlier, to kill a node). It waits until JetStream has a
// meta leader.
func StartCluster(t testing.TB, n int) []*embednats.Server {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i])
	}
	servers := make([]*embednats.Server, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range servers {
		wg.Go(func() {
			name := fmt.Sprintf("n%d", i+1)
			servers[i], errs[i] = embednats.Start(context.Background(), embednats.Settings{
				StoreDir: filepath.Join(t.TempDir(), name), ServerName: name, Host: "127.0.0.1", Port: -1,
				SyncInterval: time.Second, MaxPayload: 8 << 20, ReadyTimeout: 30 * time.Second,
				Cluster: &embednats.Cluster{Name: "tk", Host: "127.0.0.1", Port: ports[i], Routes: routes},
				Tags:    []string{name},
			})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range servers {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// JetStream answers once the meta group has elected a leader.
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return servers
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster's JetStream is not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URLs is the servers' client URLs, comma-separated, for nats.url.
func URLs(servers []*embednats.Server) string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}
