package azureactivity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// BlobCollector reads the Activity Log that a diagnostic setting archives
// to a storage account: one append blob of JSON lines per subscription and
// hour (resourceId=/SUBSCRIPTIONS/…/y=…/m=…/d=…/h=…/m=00/PT1H.json).
//
// Its cursor holds a byte offset per blob still within the look-back, and
// the hour before which every blob is done. A blob is read from its offset
// to its last complete line (the export appends while the hour lasts, and
// a little after); once its hour is older than the look-back, a trailing
// line without a newline is read too. Blobs are read oldest hour first.
type BlobCollector struct {
	client    *container.Client
	prefix    string
	backfill  time.Duration
	lookback  time.Duration
	pageSize  int
	now       func() time.Time
	log       *slog.Logger
	container string
}

type blobCursor struct {
	// Start: blobs of earlier hours are done.
	Start time.Time `json:"start"`
	// Offsets of the blobs from Start on that were read at all.
	Offsets map[string]int64 `json:"offsets,omitempty"`
}

var hourRE = regexp.MustCompile(`y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/`)

// blobHour is the hour a blob's name says it covers.
func blobHour(name string) (time.Time, bool) {
	m := hourRE.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02T15", m[1]+"-"+m[2]+"-"+m[3]+"T"+m[4])
	return t, err == nil
}

type blobState struct {
	name string
	hour time.Time
	size int64
	off  int64
}

// Poll implements collectors.Collector.
func (c *BlobCollector) Poll(ctx context.Context, raw []byte) (collectors.Page, error) {
	now := c.now()
	cur := blobCursor{Start: now.Add(-c.backfill).Truncate(time.Hour)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return collectors.Page{}, fmt.Errorf("decode cursor: %w", err)
		}
	}
	if cur.Offsets == nil {
		cur.Offsets = map[string]int64{}
	}
	var blobs []blobState
	pager := c.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &c.prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return collectors.Page{}, fmt.Errorf("list %s/%s: %w", c.container, c.prefix, err)
		}
		for _, b := range page.Segment.BlobItems {
			name := deref(b.Name)
			hour, ok := blobHour(name)
			if !ok || hour.Before(cur.Start) || b.Properties == nil || b.Properties.ContentLength == nil {
				continue
			}
			blobs = append(blobs, blobState{name: name, hour: hour, size: *b.Properties.ContentLength, off: cur.Offsets[name]})
		}
	}
	slices.SortFunc(blobs, func(a, b blobState) int {
		if c := a.hour.Compare(b.hour); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	sealed := func(b blobState) bool { return b.hour.Add(time.Hour + c.lookback).Before(now) }

	var page collectors.Page
	i := slices.IndexFunc(blobs, func(b blobState) bool { return b.size > b.off })
	if i >= 0 {
		b := &blobs[i]
		recs, read, err := c.read(ctx, *b, sealed(*b))
		if err != nil {
			return collectors.Page{}, err
		}
		b.off += read
		cur.Offsets[b.name] = b.off
		page.Records = recs
		page.More = read > 0 && slices.ContainsFunc(blobs, func(b blobState) bool { return b.size > b.off })
	}
	// Move Start past the hours whose blobs are sealed and read whole.
	start := now.Add(-c.lookback).Truncate(time.Hour)
	for _, b := range blobs {
		if !sealed(b) || b.off < b.size {
			start = earliest(start, b.hour)
		}
	}
	if start.After(cur.Start) {
		cur.Start = start
	}
	for name := range cur.Offsets {
		if h, ok := blobHour(name); !ok || h.Before(cur.Start) {
			delete(cur.Offsets, name)
		}
	}
	page.Next, _ = json.Marshal(cur)
	return page, nil
}

// read downloads a blob from its offset and returns the records of the
// complete lines (all lines when the blob is sealed) up to the page size,
// and how many bytes they took.
func (c *BlobCollector) read(ctx context.Context, b blobState, sealed bool) ([]collectors.Record, int64, error) {
	resp, err := c.client.NewBlobClient(b.name).DownloadStream(ctx, &blob.DownloadStreamOptions{
		Range: blob.HTTPRange{Offset: b.off, Count: b.size - b.off},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("download %s: %w", b.name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", b.name, err)
	}
	var recs []collectors.Record
	var used int64
	for len(body) > 0 && len(recs) < c.pageSize {
		line, rest, found := bytes.Cut(body, []byte{'\n'})
		if !found && !sealed {
			break // a line still being written
		}
		n := int64(len(line))
		if found {
			n++
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			recs = append(recs, collectors.Record{Raw: trimmed, Format: normalize.FormatAzureExport,
				Origin: fmt.Sprintf("%s/%s@%d", c.container, b.name, b.off+used)})
		}
		used += n
		body = rest
	}
	return recs, used, nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// newBlobCollector builds the container client from the config.
func newBlobCollector(cfg *BlobConfig, client *azblob.Client, set collectors.Settings) *BlobCollector {
	return &BlobCollector{
		client: client.ServiceClient().NewContainerClient(cfg.Container), container: cfg.Container, prefix: cfg.Prefix,
		backfill: cfg.Backfill, lookback: cfg.Lookback, pageSize: cfg.PageSize,
		now: set.Clock(), log: set.Log().With("stream", cfg.Name),
	}
}
