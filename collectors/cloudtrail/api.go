package cloudtrail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ct "github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/smithy-go"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// lookupClient is the part of the CloudTrail client the poller uses.
type lookupClient interface {
	LookupEvents(ctx context.Context, in *ct.LookupEventsInput, opts ...func(*ct.Options)) (*ct.LookupEventsOutput, error)
}

// APICollector polls LookupEvents for one account × region. Its cursor is
// a scan.Cursor: a window frozen for a whole paginated scan (AWS binds a
// NextToken to the exact request), moving forward between scans and
// re-reading the overlap for late events. Repeats are dropped by the
// stream (event ids are eventID), and, inside one process, by the set of
// ids already committed.
type APICollector struct {
	client  lookupClient
	account string
	region  string
	scan    scan.Settings
	now     func() time.Time
	log     *slog.Logger
	seen    *scan.Seen
}

// Poll implements collectors.Collector.
func (c *APICollector) Poll(ctx context.Context, raw []byte) (collectors.Page, error) {
	now := c.now()
	cur, err := scan.Load(raw, now, c.scan)
	if err != nil {
		return collectors.Page{}, err
	}
	if !cur.Begin(now, c.scan) {
		return collectors.Page{Next: raw}, nil // nothing new yet
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
		cur.Rescan()
		next, _ := json.Marshal(cur)
		return collectors.Page{Next: next, More: true}, nil
	}
	if err != nil {
		return collectors.Page{}, fmt.Errorf("LookupEvents %s/%s %s..%s: %w", c.account, c.region, cur.Start.Format(time.RFC3339), cur.End.Format(time.RFC3339), err)
	}

	var page collectors.Page
	var recs []scan.Rec
	for _, e := range out.Events {
		id := aws.ToString(e.EventId)
		if c.seen.Has(id) {
			continue
		}
		page.Records = append(page.Records, collectors.Record{
			Raw:    []byte(aws.ToString(e.CloudTrailEvent)),
			Format: normalize.FormatCloudTrail,
			Origin: fmt.Sprintf("LookupEvents %s/%s", c.account, c.region),
		})
		recs = append(recs, scan.Rec{ID: id, Time: aws.ToTime(e.EventTime)})
	}
	page.Next, page.More = c.seen.Finish(&cur, aws.ToString(out.NextToken), now, c.scan, recs)
	return page, nil
}

// Commit implements collectors.Committer: the page's events are on the
// stream, so later polls skip them without publishing them again.
func (c *APICollector) Commit(ctx context.Context, next []byte) error {
	return c.seen.Commit(ctx, next)
}
