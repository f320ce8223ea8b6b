package gcpaudit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/lease"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// subscriber is the part of the Pub/Sub subscription client the reader uses.
type subscriber interface {
	Pull(ctx context.Context, req *pubsubpb.PullRequest, opts ...gax.CallOption) (*pubsubpb.PullResponse, error)
	Acknowledge(ctx context.Context, req *pubsubpb.AcknowledgeRequest, opts ...gax.CallOption) error
	ModifyAckDeadline(ctx context.Context, req *pubsubpb.ModifyAckDeadlineRequest, opts ...gax.CallOption) error
}

// PubSubCollector reads LogEntries that a log sink publishes to Pub/Sub,
// with unary pulls: each poll takes a bounded batch, and its messages are
// acknowledged only when Commit says their events are on the stream
// (acknowledged and synced). Until then their lease is extended. A crash
// before the ack leaves the messages to be delivered again; their event
// ids make the stream drop them. A message that is not a LogEntry is
// dead-lettered by the pipeline, then acknowledged like the rest: kept on
// the stream, not redelivered forever. Flow control: at most
// maxOutstanding messages are pulled and not yet acknowledged.
type PubSubCollector struct {
	sub            subscriber
	name           string
	maxMessages    int
	maxOutstanding int
	deadline       time.Duration
	log            *slog.Logger
	closeClient    func() error
	nonce          string

	mu       sync.Mutex
	seq      int
	inflight *lease.Pages // ack ids of pages not yet committed
}

func newPubSubCollector(cfg *PubSubConfig, sub subscriber, closeClient func() error, log *slog.Logger) *PubSubCollector {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := &PubSubCollector{sub: sub, name: cfg.Subscription, maxMessages: cfg.MaxMessages, maxOutstanding: cfg.MaxOutstanding,
		deadline: cfg.AckDeadline, log: log, closeClient: closeClient, nonce: hex.EncodeToString(b)}
	c.inflight = &lease.Pages{Every: cfg.AckDeadline / 2, Extend: func(ctx context.Context, ids []string) error {
		return c.sub.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: c.name, AckIds: ids, AckDeadlineSeconds: int32(c.deadline / time.Second)})
	}, OnError: func(err error) {
		c.log.Warn("could not extend Pub/Sub leases; the messages may be delivered twice", "err", err)
	}}
	return c
}

// Poll implements collectors.Collector. The cursor only names the page,
// for Commit: a subscription has no position to resume from.
func (c *PubSubCollector) Poll(ctx context.Context, cur []byte) (collectors.Page, error) {
	room := min(c.maxMessages, c.maxOutstanding-c.inflight.Outstanding())
	if room <= 0 {
		return collectors.Page{Next: cur}, nil // wait for commits
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := c.sub.Pull(pctx, &pubsubpb.PullRequest{Subscription: c.name, MaxMessages: int32(room)})
	cancel()
	if status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil {
		return collectors.Page{Next: cur}, nil // nothing to pull
	}
	if err != nil {
		return collectors.Page{}, fmt.Errorf("pull %s: %w", c.name, err)
	}
	if len(resp.ReceivedMessages) == 0 {
		return collectors.Page{Next: cur}, nil
	}
	var page collectors.Page
	var ackIDs []string
	for _, m := range resp.ReceivedMessages {
		ackIDs = append(ackIDs, m.AckId)
		page.Records = append(page.Records, collectors.Record{
			Raw: m.GetMessage().GetData(), Format: normalize.FormatGCPAudit,
			Origin: "pubsub " + c.name + " " + m.GetMessage().GetMessageId(),
		})
	}
	c.mu.Lock()
	c.seq++
	page.Next = fmt.Appendf(nil, `{"p":%q,"n":%d}`, c.nonce, c.seq)
	c.mu.Unlock()
	c.inflight.Hold(ctx, page.Next, ackIDs)
	page.More = true
	return page, nil
}

// Commit implements collectors.Committer: acknowledge the page's messages.
func (c *PubSubCollector) Commit(ctx context.Context, next []byte) error {
	var errs []error
	for ids := c.inflight.Release(next); len(ids) > 0; {
		n := min(len(ids), 1000)
		if err := c.sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: c.name, AckIds: ids[:n]}); err != nil {
			errs = append(errs, err)
		}
		ids = ids[n:]
	}
	return errors.Join(errs...)
}

// Close releases the leases of pages never committed, so that their
// messages are delivered again at once rather than after their deadline,
// and closes the client.
func (c *PubSubCollector) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, ids := range c.inflight.ReleaseAll() {
		_ = c.sub.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: c.name, AckIds: ids, AckDeadlineSeconds: 0})
	}
	return c.closeClient()
}
