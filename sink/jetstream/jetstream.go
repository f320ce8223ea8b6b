// Package jetstream is the sink that publishes to a NATS JetStream stream:
// it creates the stream, names the subjects, and gates success on PubAcks.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/sink"
)

// StreamConfig is what the stream must look like.
type StreamConfig struct {
	Name            string
	DuplicateWindow time.Duration
	MaxAge          time.Duration // 0: keep forever
	MaxBytes        int64         // 0: no limit
	Replicas        int
	Placement       Placement
	// Apply updates an existing stream that differs, instead of reporting.
	Apply bool
}

// Subjects the stream holds. trailkeeper.checkpoint is deliberately outside
// it, so archive checkpoints can be kept apart from what they certify.
var Subjects = []string{"audit.>", "iac.>"}

// Publisher publishes to one stream. It implements sink.Sink.
type Publisher struct {
	js     jetstream.JetStream
	stream string
	// OnDuplicate, if set, is told how many messages of a page the stream
	// dropped as duplicates (for metrics).
	OnDuplicate func(n int)
}

// AckTimeout bounds the wait for one PubAck (acks come in milliseconds;
// a spurious timeout costs a re-publish of duplicates). Without it (nats.go's
// default) an ack lost with a cluster node that died after taking the
// message leaves the page waiting forever; with it the page fails and is
// published again, and its ids make the repeat a duplicate.
const AckTimeout = 10 * time.Second

// Options are what a Publisher's js must be created with: bounded pending
// acks (memory) and bounded ack waits (AckTimeout).
func Options() []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(AckTimeout)}
}

// NewPublisher returns a Publisher for the stream named stream. js should
// be created with Options().
func NewPublisher(js jetstream.JetStream, stream string) *Publisher {
	return &Publisher{js: js, stream: stream}
}

// Publish implements sink.Sink: it sends every message asynchronously with
// Nats-Msg-Id set, then waits for every PubAck.
func (p *Publisher) Publish(ctx context.Context, msgs []sink.Message) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var sendErr error
	for _, m := range msgs {
		nm := nats.NewMsg(m.Subject)
		nm.Data = m.Data
		for k, v := range m.Header {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(jetstream.MsgIDHeader, m.ID)
		f, err := p.js.PublishMsgAsync(nm, jetstream.WithExpectStream(p.stream))
		if err != nil {
			sendErr = fmt.Errorf("publish %s: %w", m.Subject, err)
			break
		}
		futures = append(futures, f)
	}
	// Wait for what was sent even after a send error, so no ack of this
	// page is left pending when we return.
	var errs []error
	if sendErr != nil {
		errs = append(errs, sendErr)
	}
	dups := 0
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				dups++
			}
		case err := <-f.Err():
			if len(errs) < 5 { // enough to diagnose; the rest say the same
				errs = append(errs, fmt.Errorf("publish %s: %w", f.Msg().Subject, err))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if dups > 0 && p.OnDuplicate != nil {
		p.OnDuplicate(dups)
	}
	return errors.Join(errs...)
}

var _ sink.Sink = (*Publisher)(nil)

// EventSubject is audit.<cloud>.<account>.<service>, tokens sanitized.
// service is the cloud's service name (s3.amazonaws.com,
// compute.googleapis.com, Microsoft.Network), shortened to its first label.
func EventSubject(cloud, account, service string) string {
	return "audit." + Token(cloud) + "." + Token(account) + "." + Token(ServiceToken(service))
}

// DeadLetterSubject is audit.deadletter.<cloud>.
func DeadLetterSubject(cloud string) string { return "audit.deadletter." + Token(cloud) }

// AttestSubject is where integrity attestations of a cloud account go
// (CloudTrail digest verifications).
func AttestSubject(cloud, account string) string {
	return "audit.attest." + Token(cloud) + "." + Token(account)
}

// ServiceToken shortens a service name: s3.amazonaws.com → s3,
// compute.googleapis.com → compute, Microsoft.Network → microsoft_network.
func ServiceToken(service string) string {
	s := strings.ToLower(service)
	if strings.HasPrefix(s, "microsoft.") {
		return strings.ReplaceAll(s, ".", "_")
	}
	first, _, _ := strings.Cut(s, ".")
	return first
}

// Token makes s a single subject token: lower case, only [a-z0-9_-];
// anything else becomes '_'; empty becomes "unknown".
func Token(s string) string {
	if s == "" {
		return "unknown"
	}
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}
