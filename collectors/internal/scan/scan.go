// Package scan is the cursor of the API pollers (CloudTrail LookupEvents,
// Cloud Logging entries.list, the Azure Activity Log): a time window that
// is frozen for a whole paginated scan and moves forward between scans,
// re-reading an overlap for late records; and the set of record ids
// already committed, so that the overlap's repeats are not published again
// inside one process.
//
// A window is frozen because the clouds bind a page token to its exact
// request; a page that failed is asked again with the same window and
// token. When a scan ends, the next window starts at the end of this one,
// or earlier by the overlap counted back from when this scan began,
// whichever is earlier: a record that became visible up to `overlap`
// late, with an older timestamp, is read by the next scan. Back-fill
// windows, far in the past, are not re-read at all. The span of a window
// adapts: it doubles after a scan of one page (a quiet back-fill costs
// few requests) and halves after one of many pages (a busy source still
// saves progress often).
package scan

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/trailkeeper/trailkeeper/config"
)

// Settings of a windowed scan.
type Settings struct {
	Lag      time.Duration // windows end this far behind now
	Overlap  time.Duration // re-read, counted back from a scan's start
	Backfill time.Duration // how far back the first window starts
	Window   time.Duration // the first span
}

// Bounds of the adaptive span.
const (
	MaxSpan    = 7 * 24 * time.Hour
	MinSpan    = time.Minute
	sparseScan = 1  // pages
	busyScan   = 20 // pages
)

// Cursor is the JSON-encoded state of one stream.
type Cursor struct {
	// Start of the next or current window.
	Start time.Time `json:"start"`
	// End and Frozen are set while a scan is in progress: its end, and
	// when it began.
	End    time.Time `json:"end,omitzero"`
	Frozen time.Time `json:"frozen,omitzero"`
	Token  string    `json:"token,omitempty"`
	// Pages read so far in the scan, and the span of the next window.
	Pages int           `json:"pages,omitempty"`
	Span  time.Duration `json:"span,omitempty"`
}

// New is the cursor of a first start.
func New(now time.Time, s Settings) Cursor {
	return Cursor{Start: now.Add(-s.Backfill), Span: s.Window}
}

// Load decodes a saved cursor, or returns New's for a first start (raw nil).
func Load(raw []byte, now time.Time, s Settings) (Cursor, error) {
	c := New(now, s)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return c, fmt.Errorf("decode cursor: %w", err)
		}
	}
	return c, nil
}

// Validate checks settings as a collector's config states them (maxBackfill:
// what the cloud keeps) and returns every problem, by config key.
func (s Settings) Validate(maxBackfill time.Duration, why string) []error {
	var errs []error
	if s.Lag < 0 {
		errs = append(errs, config.Errorf("lag", "must not be negative"))
	}
	if s.Overlap < s.Lag {
		errs = append(errs, config.Errorf("overlap", "must be at least lag (%s)", s.Lag))
	}
	if s.Backfill <= 0 || s.Backfill > maxBackfill {
		errs = append(errs, config.Errorf("backfill", "must be more than 0 and at most %s, %s", maxBackfill, why))
	}
	if s.Window < time.Minute {
		errs = append(errs, config.Errorf("window", "must be at least 1m"))
	}
	return errs
}

// Begin freezes the next window unless a scan is in progress. It returns
// false when there is nothing new to read yet.
func (c *Cursor) Begin(now time.Time, s Settings) bool {
	if c.Span == 0 {
		c.Span = s.Window
	}
	if !c.End.IsZero() {
		return true
	}
	end := c.Start.Add(c.Span)
	if limit := now.Add(-s.Lag); limit.Before(end) {
		end = limit
	}
	if !end.After(c.Start) {
		return false
	}
	c.End, c.Frozen, c.Token, c.Pages = end, now, "", 0
	return true
}

// Page records a page read; next is its next-page token ("" at the end of
// the scan). It reports whether more can be read at once: another page,
// or, during back-fill, another window.
func (c *Cursor) Page(next string, now time.Time, s Settings) (more bool) {
	c.Pages++
	if next != "" {
		c.Token = next
		return true
	}
	switch {
	case c.Pages <= sparseScan:
		c.Span = min(2*c.Span, MaxSpan)
	case c.Pages > busyScan:
		c.Span = max(c.Span/2, MinSpan)
	}
	if n := earliest(c.End, c.Frozen.Add(-s.Overlap)); n.After(c.Start) {
		c.Start = n
	}
	c.End, c.Frozen, c.Token, c.Pages = time.Time{}, time.Time{}, "", 0
	return now.Add(-s.Lag).Sub(c.Start) > s.Overlap+time.Minute // back-filling
}

// Rescan starts the current window over (its page token was refused).
func (c *Cursor) Rescan() { c.Token, c.Pages = "", 0 }

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Finish ends a poll: the cursor takes the page's next-page token (""
// at the end of a scan, see Cursor.Page), is encoded as the page's Next,
// and the page's records wait for their commit. more is Cursor.Page's.
func (s *Seen) Finish(cur *Cursor, token string, now time.Time, set Settings, recs []Rec) (next []byte, more bool) {
	more = cur.Page(token, now, set)
	next, _ = json.Marshal(cur)
	s.Pending(next, recs)
	return next, more
}

// Commit implements collectors.Committer for the pollers: the page's
// records are on the stream, so later polls skip them; those older than
// its window's start (less a minute) are forgotten, since only the
// overlap brings a record back.
func (s *Seen) Commit(_ context.Context, next []byte) error {
	var c Cursor
	_ = json.Unmarshal(next, &c)
	s.commit(next, c.Start.Add(-time.Minute))
	return nil
}

// Seen is the set of record ids committed to the stream, and those of
// pages waiting for their commit. It is safe for concurrent use.
type Seen struct {
	mu      sync.Mutex
	ids     map[string]time.Time // id → record time
	pending map[string][]Rec     // page cursor → its records
}

// Rec is one record of a page.
type Rec struct {
	ID   string
	Time time.Time
}

// NewSeen returns an empty set.
func NewSeen() *Seen { return &Seen{ids: map[string]time.Time{}, pending: map[string][]Rec{}} }

// Has reports whether id was committed.
func (s *Seen) Has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

// Pending remembers the records of the page whose cursor is next.
func (s *Seen) Pending(next []byte, recs []Rec) {
	if len(recs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > 1000 {
		clear(s.pending) // pages never committed; only an optimization is lost
	}
	s.pending[string(next)] = recs
}

// commit moves the page's records into the set, and forgets those older
// than before: only the overlap can bring a record back.
func (s *Seen) commit(next []byte, before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.pending[string(next)] {
		s.ids[r.ID] = r.Time
	}
	delete(s.pending, string(next))
	for id, t := range s.ids {
		if t.Before(before) {
			delete(s.ids, id)
		}
	}
}
