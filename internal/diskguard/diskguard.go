// Package diskguard watches the free space of the folders the daemon
// writes to (its data dir with the embedded broker's store, cursors and
// index, and the archive), so that a disk filling up pauses ingestion with
// a clear reason instead of failing writes halfway, and ingestion resumes
// by itself once space is freed.
package diskguard

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Settings of a Guard.
type Settings struct {
	// Dirs are the folders to watch (a missing one is watched at its
	// nearest existing parent).
	Dirs []string
	// MinFree is the free space below which a folder counts as full.
	MinFree uint64
	// Every is how often free space is read; default 2 s.
	Every time.Duration
	// Recover is called after every check that finds space everywhere:
	// a cheap check-and-repair of what a full disk switched off (the
	// embedded broker's JetStream, which nats-server disables when a
	// write finds the disk full, even for a moment between two checks).
	Recover    func()
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Guard reports and waits out full disks.
type Guard struct {
	set  Settings
	free *prometheus.GaugeVec
	full *prometheus.GaugeVec

	mu      sync.Mutex
	short   map[string]uint64 // full folders: their free bytes
	changed chan struct{}     // closed when short changes
}

// New returns a guard; Run watches.
func New(set Settings) *Guard {
	if set.Every <= 0 {
		set.Every = 2 * time.Second
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{set: set, short: map[string]uint64{}, changed: make(chan struct{}),
		free: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailkeeper_disk_free_bytes",
			Help: "Free space of each folder the daemon writes to.",
		}, []string{"path"}),
		full: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailkeeper_disk_full",
			Help: "1 while a folder has less than disk.min_free: ingestion is paused until space is freed.",
		}, []string{"path"}),
	}
	if set.Registerer != nil {
		set.Registerer.MustRegister(g.free, g.full)
	}
	g.Check()
	return g
}

// Run reads free space until ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	t := time.NewTicker(g.set.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.Check()
		}
	}
}

// Check reads free space now.
func (g *Guard) Check() {
	short := map[string]uint64{}
	for _, dir := range g.set.Dirs {
		free, err := freeBytes(dir)
		if err != nil {
			g.set.Logger.Warn("cannot read free disk space", "path", dir, "err", err)
			continue
		}
		g.free.WithLabelValues(dir).Set(float64(free))
		full := 0.0
		if free < g.set.MinFree {
			short[dir], full = free, 1
		}
		g.full.WithLabelValues(dir).Set(full)
	}
	g.mu.Lock()
	was := len(g.short) > 0
	same := len(short) == len(g.short)
	for d := range short {
		if _, ok := g.short[d]; !ok {
			same = false
		}
	}
	g.short = short
	if !same {
		close(g.changed)
		g.changed = make(chan struct{})
	}
	g.mu.Unlock()
	switch {
	case !same && len(short) > 0:
		for d, free := range short {
			g.set.Logger.Error("disk full: ingestion paused until space is freed", "path", d, "free_bytes", free, "min_free_bytes", g.set.MinFree)
		}
	case was && len(short) == 0:
		g.set.Logger.Info("disk space is back: ingestion resumes")
	}
	if len(short) == 0 && g.set.Recover != nil {
		g.set.Recover()
	}
}

// Problem is what /readyz says while a folder is full; nil otherwise.
func (g *Guard) Problem() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.set.Dirs { // in the configured order
		if free, ok := g.short[d]; ok {
			return fmt.Errorf("disk full: %s (%d MiB free, disk.min_free is %d MiB)", d, free>>20, g.set.MinFree>>20)
		}
	}
	return nil
}

// Wait returns at once when no folder is full, or when one was and space
// came back; it returns ctx's error if ctx ends first.
func (g *Guard) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		full, changed := len(g.short) > 0, g.changed
		g.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// freeBytes is the space an unprivileged writer may still use under dir.
func freeBytes(dir string) (uint64, error) {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		if err != unix.ENOENT {
			return 0, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, err
		}
		dir = parent
	}
}
