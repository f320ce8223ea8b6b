package gcpaudit

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
)

const (
	topic = "projects/sink-project/topics/audit"
	sub   = "projects/sink-project/subscriptions/trailkeeper"
)

// pubsubFake is Google's in-process Pub/Sub fake with the sink's topic and
// the daemon's subscription.
func pubsubFake(t *testing.T) *pstest.Server {
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })
	ctx := context.Background()
	if _, err := srv.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GServer.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	return srv
}

func pubsubStream(t *testing.T, srv *pstest.Server) collectors.Stream {
	cfg := NewPubSubConfig()
	cfg.Name, cfg.Subscription, cfg.Endpoint, cfg.Insecure = "sink", sub, srv.Addr, true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts, err := clientOptions(context.Background(), &cfg.Access)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pubSubStreams(context.Background(), collectors.Settings{}, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}

// TestPubSubCrashBetweenPublishAndAck: the events reach the stream, the
// process stops before acknowledging; the messages come back to the next
// reader, and the stream holds each event once. A message that is not a
// LogEntry is dead-lettered and acknowledged, not redelivered forever.
func TestPubSubCrashBetweenPublishAndAck(t *testing.T) {
	t.Parallel()
	srv := pubsubFake(t)
	evs := entries("alpha-project", 30, time.Now().Add(-time.Minute))
	for _, e := range evs {
		b, err := protojson.Marshal(e.LogEntry)
		if err != nil {
			t.Fatal(err)
		}
		srv.Publish(topic, b, nil)
	}
	srv.Publish(topic, []byte("not a log entry"), nil)
	env := collectortest.NewStreamEnv(t)

	// First reader: publishes, never commits (its sync interval is an hour
	// and its shutdown grace short), then stops.
	first := pubsubStream(t, srv)
	stop := env.Start(t, first, time.Hour, 50*time.Millisecond)
	collectortest.WaitFor(t, "the events on the stream", 10*time.Second, func() bool { return env.Msgs(t, "") == uint64(len(evs)+1) })
	stop()
	_ = first.Collector.(*PubSubCollector).Close()
	for _, m := range srv.Messages() {
		if m.Acks > 0 {
			t.Fatalf("message %s acknowledged before its commit", m.ID)
		}
	}

	second := pubsubStream(t, srv)
	stop2 := env.Start(t, second, 0, 5*time.Second)
	collectortest.WaitFor(t, "every message acknowledged", 15*time.Second, func() bool {
		for _, m := range srv.Messages() {
			if m.Acks == 0 {
				return false
			}
		}
		return true
	})
	stop2()
	_ = second.Collector.(*PubSubCollector).Close()
	if got := env.Msgs(t, "audit.gcp.>"); got != uint64(len(evs)) {
		t.Errorf("stream holds %d events for %d messages", got, len(evs))
	}
	if got := env.Msgs(t, "audit.deadletter.gcp"); got != 1 {
		t.Errorf("%d dead letters, want 1", got)
	}
	redelivered := 0
	for _, m := range srv.Messages() {
		if m.Deliveries > 1 {
			redelivered++
		}
	}
	if redelivered == 0 {
		t.Error("nothing was delivered twice: the crash was not simulated")
	}
}

func TestPubSubFlowControl(t *testing.T) {
	t.Parallel()
	srv := pubsubFake(t)
	for _, e := range entries("alpha-project", 30, time.Now()) {
		b, _ := protojson.Marshal(e.LogEntry)
		srv.Publish(topic, b, nil)
	}
	st := pubsubStream(t, srv)
	c := st.Collector.(*PubSubCollector)
	defer c.Close()
	c.maxMessages, c.maxOutstanding = 10, 20
	var cur []byte
	got := 0
	for range 3 {
		page, err := c.Poll(context.Background(), cur)
		if err != nil {
			t.Fatal(err)
		}
		got += len(page.Records)
		cur = page.Next
	}
	if got != 20 {
		t.Errorf("%d messages outstanding, bound is 20", got)
	}
	if err := c.Commit(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	page, err := c.Poll(context.Background(), cur)
	if err != nil || len(page.Records) != 10 {
		t.Errorf("after a commit: %d records, %v", len(page.Records), err)
	}
}
