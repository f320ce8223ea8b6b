package scan

import (
	"testing"
	"time"
)

func TestWindows(t *testing.T) {
	s := Settings{Lag: 5 * time.Minute, Overlap: 20 * time.Minute, Backfill: 3 * time.Hour, Window: time.Hour}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := New(now, s)
	type step struct {
		start, end time.Duration // from now
		pages      int
		more       bool
	}
	for i, want := range []step{
		{-3 * time.Hour, -2 * time.Hour, 1, true},       // sparse: span doubles
		{-2 * time.Hour, -5 * time.Minute, 2, false},    // capped at now-lag; caught up
		{-20 * time.Minute, -5 * time.Minute, 1, false}, // live: the overlap is re-read
	} {
		if !c.Begin(now, s) {
			t.Fatalf("step %d: nothing to read", i)
		}
		if got := c.Start.Sub(now); got != want.start {
			t.Errorf("step %d: start %s, want %s", i, got, want.start)
		}
		if got := c.End.Sub(now); got != want.end {
			t.Errorf("step %d: end %s, want %s", i, got, want.end)
		}
		var more bool
		for p := range want.pages {
			next := ""
			if p < want.pages-1 {
				next = "tok"
			}
			more = c.Page(next, now, s)
		}
		if more != want.more {
			t.Errorf("step %d: more %v", i, more)
		}
	}
	// Nothing new until time passes.
	c2 := c
	c2.Start = now.Add(-s.Lag)
	if c2.Begin(now, s) {
		t.Error("a window of zero length began")
	}
}

func TestBusyScanHalvesSpan(t *testing.T) {
	s := Settings{Lag: time.Minute, Overlap: 10 * time.Minute, Backfill: 48 * time.Hour, Window: 4 * time.Hour}
	now := time.Now()
	c := New(now, s)
	c.Begin(now, s)
	for range busyScan {
		c.Page("tok", now, s)
	}
	c.Page("", now, s)
	if c.Span != 2*time.Hour {
		t.Errorf("span %s after a busy scan", c.Span)
	}
}

func TestSeen(t *testing.T) {
	s := NewSeen()
	t0 := time.Now()
	s.Pending([]byte("p1"), []Rec{{"a", t0}, {"b", t0.Add(-time.Hour)}})
	if s.Has("a") {
		t.Fatal("pending counted as committed")
	}
	s.commit([]byte("p1"), t0.Add(-time.Minute))
	if !s.Has("a") || s.Has("b") {
		t.Errorf("after commit: a %v b %v (b is older than the overlap)", s.Has("a"), s.Has("b"))
	}
	s.commit([]byte("unknown"), t0.Add(-time.Minute)) // a page never seen: no-op
}
