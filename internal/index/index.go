// Package index is the on-call change index: an embedded SQLite database
// (modernc.org/sqlite, no cgo) under the data directory with what the
// questions of an incident need — who changed this resource, through which
// run, what else that run touched, what drifted — and the stream sequence
// of every row, to fetch the full event. It is fed by a durable consumer
// of the stream (Follower) and can always be rebuilt from the stream or
// the archive: nothing in it is the only copy.
package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// schemaVersion changes when the tables do; an index of another version
// is rebuilt (it is a cache of the stream).
const schemaVersion = 2

const schema = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
	seq        INTEGER PRIMARY KEY,         -- stream sequence
	uid        TEXT NOT NULL UNIQUE,        -- metadata.uid
	time       INTEGER NOT NULL,            -- unix ms
	cloud      TEXT NOT NULL,               -- aws, gcp, azure
	account    TEXT NOT NULL COLLATE NOCASE,
	region     TEXT NOT NULL,
	actor      TEXT NOT NULL COLLATE NOCASE, -- principal: user, role, service account, app
	actor_name TEXT NOT NULL COLLATE NOCASE, -- session, display or user name
	actor_type TEXT NOT NULL,
	action     TEXT NOT NULL,
	service    TEXT NOT NULL,
	outcome    TEXT NOT NULL,                -- success, failure, unknown
	mutating   INTEGER NOT NULL,
	run_key    TEXT NOT NULL,
	band       TEXT NOT NULL,               -- attested … unexplained; '' when not linked
	confidence REAL NOT NULL,
	resources  TEXT NOT NULL,               -- JSON [{uid,name,type}]
	leaf       INTEGER                      -- archive leaf, once archived
);
CREATE INDEX IF NOT EXISTS changes_time ON changes(time, seq);
CREATE INDEX IF NOT EXISTS changes_run ON changes(run_key, time, seq) WHERE run_key <> '';
CREATE INDEX IF NOT EXISTS changes_actor ON changes(actor, time);
CREATE INDEX IF NOT EXISTS changes_actor_name ON changes(actor_name, time);
-- Every principal and the names it acted under: an actor search resolves
-- here first, so that the change list walks one actor's time index.
CREATE TABLE IF NOT EXISTS actors (
	actor TEXT NOT NULL COLLATE NOCASE,
	name  TEXT NOT NULL COLLATE NOCASE,
	PRIMARY KEY (actor, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS actors_name ON actors(name);
-- One row per resource of a change: exact and prefix lookups, newest first.
CREATE TABLE IF NOT EXISTS res (
	rid  TEXT NOT NULL,                     -- lower-cased id
	time INTEGER NOT NULL,
	seq  INTEGER NOT NULL,
	PRIMARY KEY (rid, time, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS res_seq ON res(seq);
-- Name fragments: trigrams of resource ids and names, rowid = seq.
CREATE VIRTUAL TABLE IF NOT EXISTS res_fts USING fts5(text, content='', contentless_delete=1, tokenize='trigram');
CREATE TABLE IF NOT EXISTS drift (
	uid       TEXT PRIMARY KEY,             -- the finding's uid
	seq       INTEGER NOT NULL,
	event_uid TEXT NOT NULL,
	time      INTEGER NOT NULL,             -- the change's time
	found     INTEGER NOT NULL,             -- when the detector judged it
	type      TEXT NOT NULL,
	severity  TEXT NOT NULL,
	cloud     TEXT NOT NULL,
	account   TEXT NOT NULL,
	resource  TEXT NOT NULL,
	run_key   TEXT NOT NULL,
	workspace TEXT NOT NULL,
	title     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS drift_time ON drift(time, uid);
CREATE INDEX IF NOT EXISTS drift_event ON drift(event_uid);
CREATE INDEX IF NOT EXISTS drift_resource ON drift(resource COLLATE NOCASE, time);
-- The archive's Merkle tree: tlog's stored hashes, for inclusion proofs
-- without a pass over the archive.
CREATE TABLE IF NOT EXISTS tree (idx INTEGER PRIMARY KEY, h BLOB NOT NULL);
-- Archived segments. When a segment's sequences are contiguous (always,
-- unless the stream dropped messages before they were archived), a
-- change's leaf is first + (seq - first_seq) and is not written per row.
CREATE TABLE IF NOT EXISTS segments (first INTEGER PRIMARY KEY, last INTEGER NOT NULL,
	first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, contiguous INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS segments_seq ON segments(last_seq) WHERE contiguous;
`

// Index is the change index. Its methods are safe for concurrent use:
// SQLite serializes writers, and readers see committed transactions (WAL).
type Index struct {
	db   *sql.DB
	path string
}

// Open opens (or creates) the index at path. An index written by another
// schema version is removed and recreated empty, to be rebuilt.
func Open(ctx context.Context, path string) (*Index, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	ix, err := open(ctx, path)
	if err != nil {
		return nil, err
	}
	v, err := ix.meta(ctx, "schema")
	if err != nil {
		ix.Close()
		return nil, err
	}
	if v != "" && v != strconv.Itoa(schemaVersion) {
		ix.Close()
		if err := Remove(path); err != nil {
			return nil, err
		}
		if ix, err = open(ctx, path); err != nil {
			return nil, err
		}
	}
	if err := ix.setMeta(ctx, ix.db, "schema", strconv.Itoa(schemaVersion)); err != nil {
		ix.Close()
		return nil, err
	}
	return ix, nil
}

func open(ctx context.Context, path string) (*Index, error) {
	// WAL: readers (the API) never wait for the writer; synchronous=NORMAL
	// is durable enough for a cache that is rebuilt from the stream. A
	// 64 MiB page cache per connection: with SQLite's 2 MiB default, the
	// random inserts of ids and names read pages from the OS at every
	// change once the index is past a few hundred MB (at 1 M changes,
	// indexing ran 13× slower than at 20 000).
	dsn := "file:" + filepath.ToSlash(path) + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)&_pragma=cache_size(-65536)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("index %s: schema: %w", path, err)
	}
	return &Index{db: db, path: path}, nil
}

// Remove deletes an index's files (the database and its WAL).
func Remove(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("index: %w", err)
		}
	}
	return nil
}

// Close closes the database.
func (ix *Index) Close() error { return ix.db.Close() }

// Path is the database file.
func (ix *Index) Path() string { return ix.path }

func (ix *Index) meta(ctx context.Context, k string) (string, error) {
	var v string
	err := ix.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = ?`, k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("index: meta %s: %w", k, err)
	}
	return v, nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (ix *Index) setMeta(ctx context.Context, x execer, k, v string) error {
	if _, err := x.ExecContext(ctx, `INSERT INTO meta(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, k, v); err != nil {
		return fmt.Errorf("index: meta %s: %w", k, err)
	}
	return nil
}

func (ix *Index) metaInt(ctx context.Context, k string) (int64, error) {
	v, err := ix.meta(ctx, k)
	if err != nil || v == "" {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// LastSeq is the last stream sequence applied: the follower resumes
// after it.
func (ix *Index) LastSeq(ctx context.Context) (uint64, error) {
	n, err := ix.metaInt(ctx, "last_seq")
	return uint64(n), err
}

// Msg is one stream message to index.
type Msg struct {
	Seq     uint64
	Subject string
	Data    []byte
}

// Apply indexes messages in one transaction and records the last one's
// sequence with them, so that a crash leaves either all or none: the
// follower resumes after LastSeq and nothing is indexed twice. Messages
// at or below LastSeq are skipped; messages that are not events or
// drift findings only advance LastSeq.
func (ix *Index) Apply(ctx context.Context, msgs []Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	last, err := ix.LastSeq(ctx)
	if err != nil {
		return err
	}
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback()
	st, err := prepare(ctx, tx)
	if err != nil {
		return err
	}
	defer st.close()
	top := last
	for _, m := range msgs {
		if m.Seq <= last {
			continue
		}
		top = max(top, m.Seq)
		if err := st.apply(ctx, m); err != nil {
			return fmt.Errorf("index: seq %d: %w", m.Seq, err)
		}
	}
	if top == last {
		return nil
	}
	if err := ix.setMeta(ctx, tx, "last_seq", strconv.FormatUint(top, 10)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: commit: %w", err)
	}
	return nil
}

// Prune deletes changes and drift findings older than before, and returns
// how many changes went.
func (ix *Index) Prune(ctx context.Context, before time.Time) (int64, error) {
	ms := before.UnixMilli()
	var total int64
	for {
		// In slices, so that the API never waits long for the writer.
		tx, err := ix.db.BeginTx(ctx, nil)
		if err != nil {
			return total, fmt.Errorf("index: prune: %w", err)
		}
		var seqs []any
		rows, err := tx.QueryContext(ctx, `SELECT seq FROM changes WHERE time < ? ORDER BY time LIMIT 5000`, ms)
		if err == nil {
			for rows.Next() {
				var s int64
				if err = rows.Scan(&s); err != nil {
					break
				}
				seqs = append(seqs, s)
			}
			rows.Close()
		}
		if err == nil {
			err = deleteSeqs(ctx, tx, seqs)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM drift WHERE time < ?`, ms)
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return total, fmt.Errorf("index: prune: %w", err)
		}
		total += int64(len(seqs))
		if len(seqs) < 5000 {
			return total, nil
		}
	}
}

func deleteSeqs(ctx context.Context, tx *sql.Tx, seqs []any) error {
	for _, q := range []string{`DELETE FROM res WHERE seq = ?`, `DELETE FROM res_fts WHERE rowid = ?`, `DELETE FROM changes WHERE seq = ?`} {
		st, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		for _, s := range seqs {
			if _, err := st.ExecContext(ctx, s); err != nil {
				st.Close()
				return err
			}
		}
		st.Close()
	}
	return nil
}

// Stats are the index's size.
type Stats struct {
	Changes int64 `json:"changes"`
	Drift   int64 `json:"drift"`
	LastSeq uint64
	Bytes   int64 `json:"bytes"` // database and WAL files
}

// Stats counts rows and bytes.
func (ix *Index) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	if err := ix.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM drift)`).Scan(&s.Changes, &s.Drift); err != nil {
		return s, fmt.Errorf("index: %w", err)
	}
	var err error
	if s.LastSeq, err = ix.LastSeq(ctx); err != nil {
		return s, err
	}
	for _, p := range []string{ix.path, ix.path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			s.Bytes += fi.Size()
		}
	}
	return s, nil
}

// Optimize refreshes the query planner's statistics; the follower calls
// it after large batches and on a timer.
func (ix *Index) Optimize(ctx context.Context) error {
	_, err := ix.db.ExecContext(ctx, `PRAGMA optimize=0x10002`)
	return err
}

// ReadHashes implements tlog.HashReader over the archive's stored hashes.
func (ix *Index) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	st, err := ix.db.Prepare(`SELECT h FROM tree WHERE idx = ?`)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for i, x := range idx {
		var b []byte
		if err := st.QueryRow(x).Scan(&b); err != nil {
			return nil, fmt.Errorf("index: tree hash %d: %w", x, err)
		}
		copy(out[i][:], b)
	}
	return out, nil
}
