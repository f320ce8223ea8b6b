package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/sink"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: "AUDIT", DuplicateWindow: 2 * time.Hour, Replicas: 1}
}

func msgs(ids ...string) []sink.Message {
	out := make([]sink.Message, len(ids))
	for i, id := range ids {
		out[i] = sink.Message{Subject: "audit.aws.123.s3", ID: id, Data: []byte(`{"id":"` + id + `"}`), Header: map[string]string{"X-Test": id}}
	}
	return out
}

func TestEnsureStream(t *testing.T) {
	ctx := context.Background()
	_, _, js := embednatstest.Start(t)
	st, err := jetstream.EnsureStream(ctx, js, streamConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Duplicates != 2*time.Hour || len(cfg.Subjects) != 2 || cfg.Storage != natsjs.FileStorage {
		t.Errorf("stream config = %+v", cfg)
	}
	// Idempotent; a changed setting is reported, every difference at once,
	// and applied only when asked.
	if _, err := jetstream.EnsureStream(ctx, js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	c := streamConfig()
	c.MaxAge = 24 * time.Hour
	c.Placement = jetstream.Placement{Tags: []string{"ssd"}}
	_, err = jetstream.EnsureStream(ctx, js, c)
	var me *jetstream.MismatchError
	if !errors.As(err, &me) || len(me.Diffs) != 2 || me.Diffs[0] != "max age is 0 (none), the config says 24h0m0s" || me.Diffs[1] != "placement is any, the config says tags ssd" {
		t.Fatalf("err = %v, want the max age and the placement reported", err)
	}
	c.Placement = jetstream.Placement{}
	c.Apply = true
	st, err = jetstream.EnsureStream(ctx, js, c)
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.MaxAge != 24*time.Hour {
		t.Error("max age not updated")
	}
	// Audit evidence cannot be purged or deleted.
	pub := jetstream.NewPublisher(js, "AUDIT")
	if err := pub.Publish(ctx, msgs("a")); err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("purge allowed")
	}
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Error("delete allowed")
	}
}

func TestPublishDedupesByID(t *testing.T) {
	ctx := context.Background()
	_, _, js := embednatstest.Start(t)
	st, err := jetstream.EnsureStream(ctx, js, streamConfig())
	if err != nil {
		t.Fatal(err)
	}
	pub := jetstream.NewPublisher(js, "AUDIT")
	dups := 0
	pub.OnDuplicate = func(n int) { dups += n }
	if err := pub.Publish(ctx, msgs("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	// A retried page and an overlapping one: duplicates are success.
	if err := pub.Publish(ctx, msgs("b", "c", "d")); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 4 || dups != 2 {
		t.Errorf("stream holds %d messages, %d duplicates reported; want 4 and 2", info.State.Msgs, dups)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Nats-Msg-Id") != "a" || m.Header.Get("X-Test") != "a" || string(m.Data) != `{"id":"a"}` {
		t.Errorf("stored message = %v %s", m.Header, m.Data)
	}
}

func TestPublishWithoutStreamFails(t *testing.T) {
	_, _, js := embednatstest.Start(t)
	pub := jetstream.NewPublisher(js, "AUDIT")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, msgs("a")); err == nil {
		t.Fatal("publish without a stream succeeded")
	}
	// A stream of another name on the subject is not ours: also an error.
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "OTHER", Subjects: []string{"audit.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, msgs("b")); err == nil {
		t.Fatal("publish into the wrong stream succeeded")
	}
}

func TestPublishCancelled(t *testing.T) {
	_, _, js := embednatstest.Start(t)
	if _, err := jetstream.EnsureStream(context.Background(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	err := jetstream.NewPublisher(js, "AUDIT").Publish(ctx, msgs(ids...))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// A PubAck that never comes (a node that died with the message) fails the
// page after the ack timeout instead of holding it forever.
func TestPublishLostAckTimesOut(t *testing.T) {
	_, nc, _ := embednatstest.Start(t)
	// Something answers to the subject, so it is not "no responders", but
	// never acknowledges: what a lost ack looks like to the publisher.
	sub, err := nc.Subscribe("audit.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, err := natsjs.New(nc, append(jetstream.Options(), natsjs.WithPublishAsyncTimeout(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = jetstream.NewPublisher(js, "AUDIT").Publish(ctx, msgs("a", "b"))
	if !errors.Is(err, natsjs.ErrAsyncPublishTimeout) {
		t.Fatalf("err = %v, want the ack timeout", err)
	}
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct{ cloud, account, service, want string }{
		{"aws", "123456789012", "s3.amazonaws.com", "audit.aws.123456789012.s3"},
		{"gcp", "my-project", "compute.googleapis.com", "audit.gcp.my-project.compute"},
		{"azure", "0000-AB", "Microsoft.Network", "audit.azure.0000-ab.microsoft_network"},
		{"aws", "", "", "audit.aws.unknown.unknown"},
		{"gcp", "a.b c*>", "x", "audit.gcp.a_b_c__.x"},
	} {
		if got := jetstream.EventSubject(tc.cloud, tc.account, tc.service); got != tc.want {
			t.Errorf("EventSubject(%q,%q,%q) = %q, want %q", tc.cloud, tc.account, tc.service, got, tc.want)
		}
	}
	if got := jetstream.DeadLetterSubject("aws"); got != "audit.deadletter.aws" {
		t.Error(got)
	}
}

func TestEnsureKV(t *testing.T) {
	ctx := context.Background()
	_, _, js := embednatstest.Start(t)
	c := jetstream.KVConfig{Bucket: "b", Description: "d", TTL: time.Minute}
	if _, err := jetstream.EnsureKV(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if _, err := jetstream.EnsureKV(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	c.TTL, c.Replicas = 2*time.Minute, 3
	_, err := jetstream.EnsureKV(ctx, js, c)
	var me *jetstream.MismatchError
	if !errors.As(err, &me) || me.Kind != "bucket" || len(me.Diffs) != 2 {
		t.Fatalf("err = %v, want replicas and TTL reported", err)
	}
	c.Replicas, c.Apply = 1, true
	if _, err := jetstream.EnsureKV(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	c.Apply = false
	if _, err := jetstream.EnsureKV(ctx, js, c); err != nil {
		t.Fatalf("after apply: %v", err)
	}
}
