package cloudtrail

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

func s3Event(bucket, key string) string {
	b, _ := json.Marshal(map[string]any{"Records": []any{map[string]any{
		"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
		"s3": map[string]any{"bucket": map[string]any{"name": bucket}, "object": map[string]any{"key": url.QueryEscape(key)}},
	}}})
	return string(b)
}

func sqsStream(t testing.TB, clk *clock, base awsConfig, srv *awsfake.Server, mod func(*S3Config)) collectors.Stream {
	t.Helper()
	q := srv.CreateQueue("trail-events")
	return s3Streams(t, clk, base, func(c *S3Config) {
		c.Mode, c.QueueURL, c.Accounts = ModeSQS, q, nil
		if mod != nil {
			mod(c)
		}
	}, nil)[0]
}

func TestSQSNotificationShapes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	tr := newTrail(t, srv, "my trails/", false)
	now := clk.Now()
	var want []awsfake.Event
	var keys []string
	for i := range 4 {
		evs := events(tr.account, tr.region, 3, now.Add(-time.Duration(50-i)*time.Minute))
		for j := range evs {
			id := evs[j].ID
			evs[j].ID = id + "-" + string(rune('a'+i))
			evs[j].Raw = strings.Replace(evs[j].Raw, `"`+id+`"`, `"`+evs[j].ID+`"`, 1)
		}
		want = append(want, evs...)
		keys = append(keys, tr.log(kindLog, now.Add(-time.Duration(45-i)*time.Minute), evs))
	}
	snsWrapped, _ := json.Marshal(map[string]any{"Type": "Notification", "Message": s3Event(tr.bucket, keys[1])})
	eventBridge, _ := json.Marshal(map[string]any{"source": "aws.s3", "detail-type": "Object Created",
		"detail": map[string]any{"bucket": map[string]any{"name": tr.bucket}, "object": map[string]any{"key": keys[2]}}})
	ctNotice, _ := json.Marshal(map[string]any{"s3Bucket": tr.bucket, "s3ObjectKey": []string{keys[3]}})
	for _, body := range []string{s3Event(tr.bucket, keys[0]), string(snsWrapped), string(eventBridge), string(ctNotice),
		`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"trail-bucket"}`, `this is not a notification`} {
		srv.SendMessage("trail-events", body)
	}

	st := sqsStream(t, clk, base, srv, nil)
	d := drainAll(t, st.Collector, nil)
	assertIDs(t, d.ids, want)
	if len(d.other) != 1 || string(d.other[0].Raw) != "this is not a notification" {
		t.Errorf("dead letters: %+v", d.other)
	}
	if n := srv.QueueLen("trail-events"); n != 0 {
		t.Errorf("%d messages left in the queue after commit", n)
	}
}

func TestSQSVisibilityExtendedUntilCommit(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, realClock(clk))
	tr := newTrail(t, srv, "", false)
	key := tr.log(kindLog, time.Now().Add(-time.Minute), events(tr.account, tr.region, 2, time.Now()))
	st := sqsStream(t, clk, base, srv, nil)
	c := st.Collector.(*SQSCollector)
	c.visibility = 2 * time.Second // below what config allows, to keep the test short
	c.inflight.Every = time.Second
	srv.SendMessage("trail-events", s3Event(tr.bucket, key))

	page, err := c.Poll(context.Background(), nil)
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("poll: %d records, %v", len(page.Records), err)
	}
	time.Sleep(3 * time.Second) // past the first visibility timeout
	out, err := sqs.NewFromConfig(base).ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &c.queueURL})
	if err != nil || len(out.Messages) != 0 {
		t.Fatalf("the message in flight was handed out again: %d, %v", len(out.Messages), err)
	}
	if err := c.Commit(context.Background(), page.Next); err != nil {
		t.Fatal(err)
	}
	if n := srv.QueueLen("trail-events"); n != 0 {
		t.Errorf("%d messages left after commit", n)
	}
}

// TestSQSKillBeforeDeleteRedelivers: the records are on the stream but the
// process dies before it deletes the message. The message comes back, is
// read again, and the stream still holds every event once.
func TestSQSKillBeforeDeleteRedelivers(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	tr := newTrail(t, srv, "", false)
	evs := events(tr.account, tr.region, 5, clk.Now().Add(-10*time.Minute))
	srv.SendMessage("trail-events", s3Event(tr.bucket, tr.log(kindLog, clk.Now().Add(-5*time.Minute), evs)))
	env := collectortest.NewStreamEnv(t)

	// First process: publishes, then dies before the delete (its cursor
	// and commit wait for a sync interval it never sees).
	st := sqsStream(t, clk, base, srv, nil)
	stop := env.Start(t, st, time.Hour, 50*time.Millisecond)
	collectortest.WaitFor(t, "the events on the stream", 10*time.Second, func() bool { return env.Msgs(t, "") == uint64(len(evs)) })
	stop()
	_ = st.Collector.(*SQSCollector).Close()
	if n := srv.QueueLen("trail-events"); n != 1 {
		t.Fatalf("%d messages in the queue, want the undeleted one", n)
	}

	// The visibility timeout passes; a new process reads it again.
	clk.Add(10 * time.Minute)
	st2 := sqsStream(t, clk, base, srv, nil)
	stop2 := env.Start(t, st2, 0, 5*time.Second)
	collectortest.WaitFor(t, "the message deleted", 10*time.Second, func() bool { return srv.QueueLen("trail-events") == 0 })
	stop2()
	if got := env.Msgs(t, ""); got != uint64(len(evs)) {
		t.Errorf("stream holds %d messages for %d events", got, len(evs))
	}
	if counts := srv.ReceiveCounts("trail-events"); len(counts) != 0 {
		t.Errorf("left: %v", counts)
	}
}
