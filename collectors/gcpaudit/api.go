package gcpaudit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	logging "cloud.google.com/go/logging/apiv2"
	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/iterator"
	_ "google.golang.org/genproto/googleapis/cloud/audit" // resolves AuditLog payloads when marshalling
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// lister is the part of the Logging client the poller uses, as one page
// per call (the generated iterator hides the token between pages).
type lister interface {
	ListPage(ctx context.Context, req *loggingpb.ListLogEntriesRequest) (*loggingpb.ListLogEntriesResponse, error)
}

// apiLister adapts the generated client: one page per call, with its
// token, through iterator.Pager. The client's own retries (UNAVAILABLE,
// INTERNAL, deadline) stay on; RESOURCE_EXHAUSTED it does not retry, and
// the poller paces that itself.
type apiLister struct{ c *logging.Client }

func (l apiLister) ListPage(ctx context.Context, req *loggingpb.ListLogEntriesRequest) (*loggingpb.ListLogEntriesResponse, error) {
	token := req.PageToken
	it := l.c.ListLogEntries(ctx, req)
	var entries []*loggingpb.LogEntry
	next, err := iterator.NewPager(it, int(req.PageSize), token).NextPage(&entries)
	if err != nil {
		return nil, err
	}
	return &loggingpb.ListLogEntriesResponse{Entries: entries, NextPageToken: next}, nil
}

// APICollector polls entries.list for a batch of resource names (one, by
// default). Its cursor is a scan.Cursor: windows frozen for a whole
// paginated scan, the filter carrying explicit timestamp bounds (never the
// client library's silent 24-hour default), ordered by timestamp, the page
// token kept so that a restart resumes where it was.
type APICollector struct {
	list      lister
	resources []string
	logNames  []string // full log names, for the filter
	extra     string
	pageSize  int32
	scan      scan.Settings
	quota     *quota
	exhausted prometheus.Counter
	now       func() time.Time
	log       *slog.Logger
	seen      *scan.Seen
	// closeClient closes the client its source's streams share (once).
	closeClient func() error
}

// Close closes the source's client; the daemon calls it after the
// pipeline stopped.
func (c *APICollector) Close() error { return c.closeClient() }

// filter is the entries.list filter of a window.
func (c *APICollector) filter(cur scan.Cursor) string {
	var logs []string
	for _, l := range c.logNames {
		logs = append(logs, fmt.Sprintf("logName=%q", l))
	}
	f := fmt.Sprintf("(%s) AND timestamp>=%q AND timestamp<=%q", strings.Join(logs, " OR "),
		cur.Start.UTC().Format(time.RFC3339Nano), cur.End.UTC().Format(time.RFC3339Nano))
	if c.extra != "" {
		f += " AND (" + c.extra + ")"
	}
	return f
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
	req := &loggingpb.ListLogEntriesRequest{
		ResourceNames: c.resources, Filter: c.filter(cur), OrderBy: "timestamp asc",
		PageSize: c.pageSize, PageToken: cur.Token,
	}
	var resp *loggingpb.ListLogEntriesResponse
	for {
		if err := c.quota.wait(ctx); err != nil {
			return collectors.Page{}, err
		}
		var err error
		resp, err = c.list.ListPage(ctx, req)
		switch status.Code(err) {
		case codes.OK:
		case codes.ResourceExhausted:
			// Quota: every stream of the project waits for the next minute,
			// then this page is asked again with the same token.
			c.exhausted.Inc()
			c.quota.exhausted()
			continue
		case codes.InvalidArgument:
			if cur.Token != "" {
				c.log.Warn("page token refused; scanning the window again", "start", cur.Start, "end", cur.End, "err", err)
				cur.Rescan()
				next, _ := json.Marshal(cur)
				return collectors.Page{Next: next, More: true}, nil
			}
			return collectors.Page{}, fmt.Errorf("entries.list %v: %w", c.resources, err)
		default:
			return collectors.Page{}, fmt.Errorf("entries.list %v %s..%s: %w", c.resources, cur.Start.Format(time.RFC3339), cur.End.Format(time.RFC3339), err)
		}
		break
	}

	var page collectors.Page
	var recs []scan.Rec
	for _, e := range resp.Entries {
		id := e.LogName + "|" + e.GetTimestamp().AsTime().Format(time.RFC3339Nano) + "|" + e.InsertId
		if c.seen.Has(id) {
			continue
		}
		page.Records = append(page.Records, entryRecord(e, "entries.list "+e.LogName))
		recs = append(recs, scan.Rec{ID: id, Time: e.GetTimestamp().AsTime()})
	}
	page.Next, page.More = c.seen.Finish(&cur, resp.NextPageToken, now, c.scan, recs)
	return page, nil
}

// Commit implements collectors.Committer.
func (c *APICollector) Commit(ctx context.Context, next []byte) error {
	return c.seen.Commit(ctx, next)
}

// entryRecord is a LogEntry as Cloud Logging exports it (protojson: camel
// case, @type kept). An entry whose payload type is unknown here cannot be
// written as JSON; it is dead-lettered as its binary form, with the reason.
func entryRecord(e *loggingpb.LogEntry, origin string) collectors.Record {
	b, err := protojson.MarshalOptions{}.Marshal(e)
	if err != nil {
		bin, _ := proto.Marshal(e)
		return collectors.Record{Raw: bin, Err: fmt.Errorf("log entry not representable as JSON: %w", err), Origin: origin}
	}
	return collectors.Record{Raw: b, Format: normalize.FormatGCPAudit, Origin: origin}
}
