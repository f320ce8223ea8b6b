package cloudtrail

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock = collectortest.Clock

func newClock() *clock { return collectortest.NewClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)) }

// fakeAWS starts the fake on clk and returns it with an SDK config that
// talks to it: static keys, its endpoint, quick retries.
func fakeAWS(t testing.TB, clk *clock, opts ...awsfake.Option) (*awsfake.Server, aws.Config) {
	t.Helper()
	srv := awsfake.New(append([]awsfake.Option{awsfake.WithClock(clk.Now)}, opts...)...)
	t.Cleanup(srv.Close)
	return fakeConfig(srv)
}

// fakeConfig is an SDK config for srv.
func fakeConfig(srv *awsfake.Server) (*awsfake.Server, aws.Config) {
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDBASE", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 20 * time.Millisecond })
		},
	}
	return srv, cfg
}

// events makes n events of one account and region, one a minute back
// from end.
func events(account, region string, n int, end time.Time) []awsfake.Event {
	out := make([]awsfake.Event, n)
	for i := range out {
		id := fmt.Sprintf("%s-%s-%04d", account, region, i)
		out[i] = awsfake.MakeEvent(account, region, id, "RunInstances", end.Add(-time.Duration(i)*time.Minute))
	}
	return out
}

// drain polls like the pipeline does (repeating a failed poll with the
// same cursor, committing what it got) until a poll says there is no
// more, and returns the event ids in order.
func drain(t testing.TB, c collectors.Collector, cur []byte) ([]string, []byte) {
	t.Helper()
	d := drainAll(t, c, cur)
	if len(d.other) > 0 {
		t.Fatalf("unexpected records: %+v", d.other)
	}
	return d.ids, d.cursor
}

type drained struct {
	ids     []string            // events
	attests []Attestation       // collector messages
	other   []collectors.Record // dead letters
	errs    int                 // failed polls
	cursor  []byte
}

func drainAll(t testing.TB, c collectors.Collector, cur []byte) drained {
	t.Helper()
	got := collectortest.Drain(t, c, cur)
	d := drained{errs: got.Errs, cursor: got.Cursor}
	for _, r := range got.Records {
		switch {
		case r.Message != nil:
			var a Attestation
			if err := json.Unmarshal(r.Message.Data, &a); err != nil {
				t.Fatal(err)
			}
			d.attests = append(d.attests, a)
		case r.Err != nil:
			d.other = append(d.other, r)
		default:
			d.ids = append(d.ids, eventID(t, r.Raw))
		}
	}
	return d
}

type awsConfig = aws.Config

// realClock turns clk into the real clock (for timers that run on real
// time, like visibility heartbeats) and returns it.
func realClock(clk *clock) *clock {
	clk.Real()
	return clk
}
