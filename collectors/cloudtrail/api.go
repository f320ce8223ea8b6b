package cloudtrail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ct "github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/smithy-go"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// lookupClient is the part of the CloudTrail client the poller uses.
type lookupClient interface {
	LookupEvents(ctx context.Context, in *ct.LookupEventsInput, opts ...func(*ct.Options)) (*ct.LookupEventsOutput, error)
}

// APICollector polls LookupEvents for one account × region.
//
// Its cursor is a time window and a NextToken. A window is frozen when its
// scan starts and kept until the last page, because AWS binds a NextToken
// to the exact request; a failed page is asked again with the same window
// and token. When a scan ends, the next window starts at the end of this
// one, or earlier by the overlap counted back from when this scan began,
// whichever is earlier: events that became visible late, with an old
// timestamp, are read again. Repeats are dropped by the stream (event ids
// are eventID), and, inside one process, by a set of ids already committed.
type APICollector struct {
	client  lookupClient
	account string
	region  string
	lag     time.Duration
	overlap time.Duration
	backfill,
	window time.Duration
	now func() time.Time
	log *slog.Logger

	mu      sync.Mutex
	seen    map[string]time.Time   // committed event ids → event time
	pending map[string][]seenEvent // page cursor → its events, until committed
}

type seenEvent struct {
	id string
	t  time.Time
}

// apiCursor is the collector's cursor.
type apiCursor struct {
	// Start of the next or current window.
	Start time.Time `json:"start"`
	// End and Frozen are set while a scan is in progress: its end, and
	// when it began.
	End    time.Time `json:"end,omitzero"`
	Frozen time.Time `json:"frozen,omitzero"`
	Token  string    `json:"token,omitempty"`
	// Pages read so far in the current scan, and the span of the next
	// window: it doubles after a scan of one page (a sparse back-fill
	// costs few requests) and halves after one of many (a busy account
	// still saves progress often).
	Pages int           `json:"pages,omitempty"`
	Span  time.Duration `json:"span,omitempty"`
}

const (
	maxSpan    = 7 * 24 * time.Hour
	minSpan    = time.Minute
	sparseScan = 1  // pages
	busyScan   = 20 // pages
)

// Poll implements collectors.Collector.
func (c *APICollector) Poll(ctx context.Context, raw []byte) (collectors.Page, error) {
	now := c.now()
	var cur apiCursor
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return collectors.Page{}, fmt.Errorf("decode cursor: %w", err)
		}
	} else {
		cur.Start = now.Add(-c.backfill)
	}
	if cur.Span == 0 {
		cur.Span = c.window
	}
	if cur.End.IsZero() {
		end := earliest(cur.Start.Add(cur.Span), now.Add(-c.lag))
		if !end.After(cur.Start) {
			return collectors.Page{Next: raw}, nil // nothing new yet
		}
		cur.End, cur.Frozen, cur.Token, cur.Pages = end, now, "", 0
	}
	in := &ct.LookupEventsInput{StartTime: aws.Time(cur.Start), EndTime: aws.Time(cur.End), MaxResults: aws.Int32(50)}
	if cur.Token != "" {
		in.NextToken = aws.String(cur.Token)
	}
	out, err := c.client.LookupEvents(ctx, in)
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidNextTokenException" {
		// The token expired (a long outage): scan the window again.
		c.log.Warn("NextToken refused; scanning the window again", "start", cur.Start, "end", cur.End)
		cur.Token = ""
		next, _ := json.Marshal(cur)
		return collectors.Page{Next: next, More: true}, nil
	}
	if err != nil {
		return collectors.Page{}, fmt.Errorf("LookupEvents %s/%s %s..%s: %w", c.account, c.region, cur.Start.Format(time.RFC3339), cur.End.Format(time.RFC3339), err)
	}

	var page collectors.Page
	var evs []seenEvent
	c.mu.Lock()
	for _, e := range out.Events {
		id := aws.ToString(e.EventId)
		if _, dup := c.seen[id]; dup {
			continue
		}
		page.Records = append(page.Records, collectors.Record{
			Raw:    []byte(aws.ToString(e.CloudTrailEvent)),
			Format: normalize.FormatCloudTrail,
			Origin: fmt.Sprintf("LookupEvents %s/%s", c.account, c.region),
		})
		evs = append(evs, seenEvent{id, aws.ToTime(e.EventTime)})
	}
	c.mu.Unlock()

	cur.Pages++
	if tok := aws.ToString(out.NextToken); tok != "" {
		cur.Token = tok
		page.More = true
	} else {
		switch {
		case cur.Pages <= sparseScan:
			cur.Span = min(2*cur.Span, maxSpan)
		case cur.Pages > busyScan:
			cur.Span = max(cur.Span/2, minSpan)
		}
		cur.Pages = 0
		// The scan is over. The next window re-reads the overlap.
		if next := earliest(cur.End, cur.Frozen.Add(-c.overlap)); next.After(cur.Start) {
			cur.Start = next
		}
		cur.End, cur.Frozen, cur.Token = time.Time{}, time.Time{}, ""
		page.More = now.Add(-c.lag).Sub(cur.Start) > c.overlap+time.Minute // back-filling
	}
	page.Next, _ = json.Marshal(cur)
	if len(evs) > 0 {
		c.mu.Lock()
		if len(c.pending) > 1000 {
			clear(c.pending) // pages that were never committed; only an optimization is lost
		}
		c.pending[string(page.Next)] = evs
		c.mu.Unlock()
	}
	return page, nil
}

// Commit implements collectors.Committer: the page's events are on the
// stream, so later polls skip them without publishing them again.
func (c *APICollector) Commit(_ context.Context, next []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var oldest time.Time
	for _, e := range c.pending[string(next)] {
		c.seen[e.id] = e.t
	}
	delete(c.pending, string(next))
	// Only the overlap can bring an event back; forget what is older.
	var cur apiCursor
	if json.Unmarshal(next, &cur) == nil {
		oldest = cur.Start.Add(-time.Minute)
	}
	for id, t := range c.seen {
		if t.Before(oldest) {
			delete(c.seen, id)
		}
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
