package azureactivity

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// APICollector polls the Activity Log of one subscription. Its cursor is
// a scan.Cursor: `eventTimestamp` windows frozen for a whole scan, ending at
// now - lag, re-reading the overlap. The API returns a window newest
// first, so the window's start moves only when its last page was read: a
// scan cut short (a restart) reads its window again, and the stream drops
// the repeats (event ids are eventDataId). The records are the response's
// own JSON, not the SDK's typed model, which drops fields.
type APICollector struct {
	client *armmonitor.ActivityLogsClient
	sub    string
	scan   scan.Settings
	now    func() time.Time
	log    *slog.Logger
	seen   *scan.Seen

	// The pager of the scan in progress, and how many pages it gave: it
	// lives in memory only (a nextLink cannot be handed back to the SDK).
	pager    *runtime.Pager[armmonitor.ActivityLogsClientListResponse]
	pagerFor scan.Cursor
}

func (c *APICollector) filter(cur scan.Cursor) string {
	return fmt.Sprintf("eventTimestamp ge '%s' and eventTimestamp le '%s'",
		cur.Start.UTC().Format(time.RFC3339Nano), cur.End.UTC().Format(time.RFC3339Nano))
}

// Poll implements collectors.Collector.
func (c *APICollector) Poll(ctx context.Context, raw []byte) (collectors.Page, error) {
	now := c.now()
	cur, err := scan.Load(raw, now, c.scan)
	if err != nil {
		return collectors.Page{}, err
	}
	if !cur.Begin(now, c.scan) {
		return collectors.Page{Next: raw}, nil
	}
	if c.pager == nil || !c.pagerFor.Start.Equal(cur.Start) || !c.pagerFor.End.Equal(cur.End) || c.pagerFor.Pages != cur.Pages {
		if cur.Pages > 0 {
			c.log.Info("scan cut short (restart); reading its window again", "start", cur.Start, "end", cur.End)
			cur.Rescan()
		}
		c.pager = c.client.NewListPager(c.filter(cur), nil)
	}
	var resp *http.Response
	page, err := c.pager.NextPage(policy.WithCaptureResponse(ctx, &resp))
	if err != nil {
		return collectors.Page{}, fmt.Errorf("activity log %s %s..%s: %w", c.sub, cur.Start.Format(time.RFC3339), cur.End.Format(time.RFC3339), err)
	}
	body, err := runtime.Payload(resp)
	if err != nil {
		return collectors.Page{}, fmt.Errorf("activity log %s: %w", c.sub, err)
	}
	raws, err := normalize.Split(body)
	if err != nil || len(raws) != len(page.Value) {
		return collectors.Page{}, fmt.Errorf("activity log %s: a page of %d events split into %d records: %v", c.sub, len(page.Value), len(raws), err)
	}
	var out collectors.Page
	var recs []scan.Rec
	for i, ev := range page.Value {
		id := deref(ev.EventDataID)
		if id != "" && c.seen.Has(id) {
			continue
		}
		out.Records = append(out.Records, collectors.Record{Raw: raws[i].Bytes, Format: normalize.FormatAzureREST, Origin: "activity log " + c.sub})
		if id != "" && ev.EventTimestamp != nil {
			recs = append(recs, scan.Rec{ID: id, Time: *ev.EventTimestamp})
		}
	}
	next := ""
	if page.NextLink != nil && *page.NextLink != "" {
		next = "nextLink" // kept in memory by the pager; the cursor only counts pages
	}
	out.Next, out.More = c.seen.Finish(&cur, next, now, c.scan, recs)
	if next == "" {
		c.pager = nil
	} else {
		c.pagerFor = cur
	}
	return out, nil
}

// Commit implements collectors.Committer.
func (c *APICollector) Commit(ctx context.Context, next []byte) error {
	return c.seen.Commit(ctx, next)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
