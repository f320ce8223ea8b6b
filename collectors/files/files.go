// Package files is the collector for audit trails exported to disk:
// CloudTrail log files as a trail delivers them (.json.gz with
// {"Records":[…]}), JSON Lines exports (.jsonl, .ndjson, GCS log-sink .json,
// optionally gzipped), Azure {"records":[…]} and {"value":[…]} documents,
// CloudWatch Logs subscription envelopes, and JSON arrays.
//
// Its cursor remembers, per file, its size and modification time and how far
// it has been published (a byte offset for line files, a record index for
// documents). Files are visited in path order. A file still being written is
// handled: only complete lines are read, and a document that does not decode
// yet is retried until it has been unchanged for the settle time; after that
// it is declared corrupt and its bytes go to the dead-letter subject. Entries
// of deleted files are dropped from the cursor, so it only grows with the
// files that exist.
package files

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// NewFactory returns the registry entry of this collector.
func NewFactory() collectors.Factory {
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewConfig() },
		Create: func(_ context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*Config)
			c := New(cfg, set)
			return []collectors.Stream{{Key: cfg.Name, Collector: c}}, nil
		},
	}
}

// Collector reads one folder tree.
type Collector struct {
	root     string
	hint     normalize.Format
	pageSize int
	settle   time.Duration
	now      func() time.Time
	log      *slog.Logger

	// cache holds the records of the last file read whole, so paging
	// through a large file does not decode it once per page.
	cache struct {
		id   fileID
		recs []collectors.Record
	}
	// scan is the last poll's listing and cursor, so that working through
	// a backlog of many files does not list the folder, stat every file
	// and decode the whole cursor again for every page (at 1 000 files,
	// that was most of a page's cost).
	scan struct {
		at   time.Time // of the listing and the stats of done files
		rels []string
		next []byte // the cursor the last poll returned
		st   cursor // … decoded
	}
}

// rescan is how long a listing, and the stats of files already done, are
// trusted while a backlog is read: a new or changed file is seen at most
// this late.
const rescan = 5 * time.Second

// New returns a collector for cfg.
func New(cfg *Config, set collectors.Settings) *Collector {
	now := set.Now
	if now == nil {
		now = time.Now
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{root: string(cfg.Path), hint: formats[cfg.Format], pageSize: cfg.PageSize, settle: cfg.Settle, now: now, log: log}
}

type cursor struct {
	Files map[string]*fileState `json:"files"`
}

// fileState is how far one file has been published.
type fileState struct {
	Size  int64 `json:"size"`
	MTime int64 `json:"mtime"` // UnixNano
	// Off is a byte offset into the (decompressed) content for line files,
	// a record index for documents.
	Off  int64 `json:"off"`
	Done bool  `json:"done,omitempty"`
}

type fileID struct {
	rel         string
	size, mtime int64
}

// supported reports whether name is a file this collector reads.
func supported(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".gz")
	return strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".ndjson")
}

// Poll implements collectors.Collector.
func (c *Collector) Poll(ctx context.Context, cur []byte) (collectors.Page, error) {
	st := cursor{Files: map[string]*fileState{}}
	// The cursor we returned last time, handed back: continuing a backlog.
	continuing := len(cur) > 0 && bytes.Equal(cur, c.scan.next) && c.now().Sub(c.scan.at) < rescan
	switch {
	case continuing:
		st.Files = maps.Clone(c.scan.st.Files)
	case len(cur) > 0:
		if err := json.Unmarshal(cur, &st); err != nil {
			return collectors.Page{}, fmt.Errorf("decode cursor: %w", err)
		}
		if st.Files == nil {
			st.Files = map[string]*fileState{}
		}
	}
	rels := c.scan.rels
	if !continuing {
		rels = nil
		err := filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && supported(d.Name()) {
				rel, _ := filepath.Rel(c.root, p)
				rels = append(rels, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			return collectors.Page{}, fmt.Errorf("list %s: %w", c.root, err)
		}
		slices.Sort(rels)
		c.scan.at, c.scan.rels = c.now(), rels
	}
	for rel := range st.Files {
		if _, found := slices.BinarySearch(rels, rel); !found {
			delete(st.Files, rel)
		}
	}

	var page collectors.Page
	for _, rel := range rels {
		if err := ctx.Err(); err != nil {
			return collectors.Page{}, err
		}
		prev := st.Files[rel]
		if continuing && prev != nil && prev.Done {
			continue // stat'ed at the listing, moments ago
		}
		info, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		} else if err != nil {
			return collectors.Page{}, fmt.Errorf("stat %s: %w", rel, err)
		}
		id := fileID{rel, info.Size(), info.ModTime().UnixNano()}
		if prev != nil && prev.Done && prev.Size == id.size && prev.MTime == id.mtime {
			continue
		}
		room := c.pageSize - len(page.Records)
		if room <= 0 {
			page.More = true
			break
		}
		recs, next, err := c.readFile(id, prev, room)
		if err != nil {
			return collectors.Page{}, err
		}
		page.Records = append(page.Records, recs...)
		st.Files[rel] = next
		if !next.Done && next.Off > offOf(prev) && len(page.Records) >= c.pageSize {
			page.More = true
			break
		}
	}
	next, err := json.Marshal(st)
	if err != nil {
		return collectors.Page{}, err
	}
	page.Next = next
	if page.More {
		c.scan.next, c.scan.st = next, st
	} else {
		c.scan.next = nil // caught up: the next poll lists afresh
	}
	return page, nil
}

func offOf(s *fileState) int64 {
	if s == nil {
		return 0
	}
	return s.Off
}

func (c *Collector) settled(id fileID) bool {
	return c.now().Sub(time.Unix(0, id.mtime)) >= c.settle
}

// readFile reads up to room records of one file after prev.
func (c *Collector) readFile(id fileID, prev *fileState, room int) ([]collectors.Record, *fileState, error) {
	next := &fileState{Size: id.size, MTime: id.mtime}
	if prev != nil {
		next.Off = prev.Off
	}
	base := strings.TrimSuffix(strings.ToLower(id.rel), ".gz")
	gz := base != strings.ToLower(id.rel)
	lineFile := strings.HasSuffix(base, ".jsonl") || strings.HasSuffix(base, ".ndjson")
	if lineFile && !gz {
		// The one kind that is appended to while we read it: stream it
		// from a byte offset.
		return c.readPlainLines(id, next, room)
	}

	// Everything else is read whole, split once into records (cached for
	// the following pages) and paged by record index.
	recs, err := c.wholeFile(id, gz, lineFile)
	if err != nil {
		var bad *undecodableError
		if errors.As(err, &bad) {
			return c.undecodable(id, bad.raw, next, bad.err)
		}
		return nil, nil, err
	}
	if prev != nil && prev.Done && (prev.Size != id.size || prev.MTime != id.mtime) {
		next.Off = 0 // a rewritten file is read again; ids dedupe repeats
	}
	next.Off = min(next.Off, int64(len(recs)))
	end := min(next.Off+int64(room), int64(len(recs)))
	out := recs[next.Off:end]
	next.Off = end
	next.Done = end == int64(len(recs))
	return out, next, nil
}

type undecodableError struct {
	raw []byte
	err error
}

func (e *undecodableError) Error() string { return e.err.Error() }

// wholeFile returns the records of a file that is read whole, from the cache
// when the file has not changed.
func (c *Collector) wholeFile(id fileID, gz, lineFile bool) ([]collectors.Record, error) {
	if c.cache.id == id {
		return c.cache.recs, nil
	}
	raw, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(id.rel)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", id.rel, err)
	}
	content := raw
	if gz && len(raw) > 0 {
		if content, err = gunzip(raw); err != nil {
			return nil, &undecodableError{raw, fmt.Errorf("gzip: %w", err)}
		}
	}
	var raws []normalize.Raw
	if lineFile {
		raws = normalize.SplitLines(content)
	} else {
		raws, err = normalize.SplitAny(content)
	}
	if errors.Is(err, normalize.ErrDigest) {
		// A CloudTrail digest file is not a record; the S3 trail collector
		// verifies digests. Nothing to publish here.
		c.log.Debug("skipping CloudTrail digest file", "file", id.rel)
		raws, err = nil, nil
	}
	if err != nil {
		return nil, &undecodableError{raw, err}
	}
	recs := make([]collectors.Record, len(raws))
	for i, r := range raws {
		origin := fmt.Sprintf("%s#%d", id.rel, i)
		if r.Line > 0 {
			origin = fmt.Sprintf("%s:%d", id.rel, r.Line)
		}
		f := r.Format
		if c.hint != normalize.FormatUnknown {
			f = c.hint
		}
		recs[i] = collectors.Record{Raw: r.Bytes, Format: f, Origin: origin}
	}
	c.cache.id, c.cache.recs = id, recs
	return recs, nil
}

// undecodable handles a file that does not decode: still being written
// (wait), or corrupt once settled (its bytes go to the dead-letter subject,
// in chunks that fit in a message).
func (c *Collector) undecodable(id fileID, raw []byte, next *fileState, cause error) ([]collectors.Record, *fileState, error) {
	if !c.settled(id) {
		return nil, next, nil
	}
	c.log.Warn("file is corrupt; sending its bytes to the dead-letter subject", "file", id.rel, "err", cause)
	const chunk = 256 << 10
	n := (len(raw) + chunk - 1) / chunk
	recs := make([]collectors.Record, 0, n)
	for i := 0; i < n; i++ {
		part := raw[i*chunk : min((i+1)*chunk, len(raw))]
		recs = append(recs, collectors.Record{
			Raw:    part,
			Origin: fmt.Sprintf("%s#part=%d/%d", id.rel, i+1, n),
			Err:    cause,
		})
	}
	next.Off, next.Done = 0, true
	return recs, next, nil
}

// readPlainLines reads up to room lines from the byte offset, never past
// the size we stat'ed, so a writer appending meanwhile cannot make us
// report a state we did not read.
func (c *Collector) readPlainLines(id fileID, next *fileState, room int) ([]collectors.Record, *fileState, error) {
	if next.Off > id.size { // truncated or replaced: start again
		next.Off = 0
	}
	f, err := os.Open(filepath.Join(c.root, filepath.FromSlash(id.rel)))
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", id.rel, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, next.Off, id.size-next.Off), 64<<10)
	final := c.settled(id)
	var recs []collectors.Record
	for len(recs) < room {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) == 0 || !final {
				break // a partial line waits for its newline or the settle time
			}
		} else if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", id.rel, err)
		}
		at := next.Off
		next.Off += int64(len(line))
		if rec, ok := c.lineRecord(id.rel, line, at); ok {
			recs = append(recs, rec)
		}
	}
	next.Done = next.Off == id.size && final
	return recs, next, nil
}

// lineRecord makes a record of one line (with or without its newline);
// blank lines are not records.
func (c *Collector) lineRecord(rel string, line []byte, at int64) (collectors.Record, bool) {
	line = bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return collectors.Record{}, false
	}
	return collectors.Record{Raw: bytes.Clone(line), Format: c.hint, Origin: fmt.Sprintf("%s@%d", rel, at)}, true
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}
