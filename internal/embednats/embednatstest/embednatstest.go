// Package embednatstest starts a real embedded JetStream server for tests,
// the way nats-server's own tests do: in process, on a temporary store.
package embednatstest

import (
	"context"
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
