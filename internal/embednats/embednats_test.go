package embednats_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/embednats"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestListenerForSIEMs(t *testing.T) {
	srv, err := embednats.Start(context.Background(), embednats.Settings{StoreDir: t.TempDir(), Port: -1, SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := srv.ClientURL()
	if url == "" {
		t.Fatal("no client URL with a listener")
	}
	// A client over TCP, as a SIEM would, sees JetStream.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Errorf("JetStream not enabled: %v", err)
	}
}

func TestInProcessOnly(t *testing.T) {
	srv, err := embednats.Start(context.Background(), embednats.Settings{StoreDir: t.TempDir(), Port: 0})
	if err != nil {
		t.Fatal(err)
	}
	if srv.ClientURL() != "" {
		t.Errorf("Port 0 listens at %s", srv.ClientURL())
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	srv.Shutdown()
	srv.Shutdown() // safe twice
}

// Messages written before a shutdown are there after a restart on the
// same store: the file store is flushed on shutdown.
func TestStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	publish := func() uint64 {
		srv, err := embednats.Start(ctx, embednats.Settings{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		nc, _ := srv.Connect()
		defer nc.Close()
		js, _ := jetstream.New(nc)
		st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "s.x", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		info, _ := st.Info(ctx)
		return info.State.Msgs
	}
	if n := publish(); n != 1 {
		t.Fatalf("first life: %d messages", n)
	}
	if n := publish(); n != 2 {
		t.Errorf("second life: %d messages, want 2", n)
	}
}

func TestStoreDirRequired(t *testing.T) {
	if _, err := embednats.Start(context.Background(), embednats.Settings{}); err == nil {
		t.Error("started without a store dir")
	}
}

// Three clustered servers hold an R3 stream that survives losing one.
func TestClusterR3SurvivesANode(t *testing.T) {
	servers := embednatstest.StartCluster(t, 3)
	nc, err := nats.Connect(embednatstest.URLs(servers), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3, Placement: &jetstream.Placement{Tags: []string{"n2"}}})
	if err == nil {
		t.Fatal("three replicas placed on the one server tagged n2")
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			for {
				// An ack lost with the node that died never comes: ask
				// again (the id makes a repeat a duplicate).
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(actx, "s.x", []byte{byte(i)}, jetstream.WithMsgID(string(rune('a'+i))))
				acancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	publish(0, 10)
	servers[0].Shutdown()
	publish(10, 20)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Errorf("%d messages, want 20", info.State.Msgs)
	}
}
