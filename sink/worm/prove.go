package worm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Proof shows that one archived message is in the log a checkpoint signs.
type Proof struct {
	Leaf       int64    `json:"leaf"`
	Line       string   `json:"line"` // the leaf's exact line
	TreeSize   int64    `json:"tree_size"`
	Path       []string `json:"inclusion_proof"` // RFC 6962 audit path, base64
	Checkpoint string   `json:"checkpoint"`      // the signed note
}

// ErrNotArchived says no leaf has the uid.
var ErrNotArchived = errors.New("no archived message has that uid")

// Prove finds the message whose msg_id (the event's metadata.uid) is uid
// and proves it against the newest checkpoint. It reads every segment and
// keeps the tree's stored hashes (about 64 bytes a leaf); a caller that
// proves often keeps them itself and calls ProveLeaf (the change index
// does).
func Prove(ctx context.Context, st Store, uid string) (Proof, error) {
	var hashes MemoryHashes
	leaf, line := int64(-1), []byte(nil)
	var n int64
	for {
		seg, ok, err := ReadSegment(ctx, st, n)
		if err != nil {
			return Proof{}, err
		}
		if !ok {
			break
		}
		for i, l := range seg.Lines {
			if leaf < 0 {
				var lf Leaf
				if json.Unmarshal(l, &lf) == nil && lf.MsgID == uid {
					leaf, line = n+int64(i), l
				}
			}
			if err := hashes.Add(n+int64(i), l); err != nil {
				return Proof{}, err
			}
		}
		n = seg.Manifest.LastLeaf + 1
	}
	if leaf < 0 {
		return Proof{}, ErrNotArchived
	}
	size, err := LatestCheckpoint(ctx, st, n)
	if err != nil {
		return Proof{}, err
	}
	return ProveLeaf(ctx, st, &hashes, size, leaf, line)
}

// Segment is one archived segment: its manifest and its lines.
type Segment struct {
	Manifest Manifest
	Lines    [][]byte
}

// ReadSegment reads the segment whose first leaf is first, found by its
// manifest's key, so that a reader following the archive never lists it.
// ok is false when the archive holds no such segment (yet).
func ReadSegment(ctx context.Context, st Store, first int64) (Segment, bool, error) {
	m, ok, err := ReadSegmentManifest(ctx, st, first)
	if err != nil || !ok {
		return Segment{}, false, err
	}
	seg, err := st.Get(ctx, m.Segment)
	if err != nil {
		return Segment{}, false, fmt.Errorf("%s: %w", m.Segment, err)
	}
	content, err := decompress(seg)
	if err != nil {
		return Segment{}, false, fmt.Errorf("%s: %w", m.Segment, err)
	}
	lines := bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'})
	if int64(len(lines)) != m.LastLeaf-m.FirstLeaf+1 {
		return Segment{}, false, fmt.Errorf("%s: %d lines, its manifest says %d", m.Segment, len(lines), m.LastLeaf-m.FirstLeaf+1)
	}
	return Segment{Manifest: m, Lines: lines}, true, nil
}

// ReadSegmentManifest reads only the manifest of the segment whose first
// leaf is first (ok false when there is none yet).
func ReadSegmentManifest(ctx context.Context, st Store, first int64) (Manifest, bool, error) {
	key := manifestKey(first)
	mb, err := st.Get(ctx, key)
	if errors.Is(err, fs.ErrNotExist) || isNotFound(err) {
		return Manifest{}, false, nil
	}
	if err != nil {
		return Manifest{}, false, fmt.Errorf("%s: %w", key, err)
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return Manifest{}, false, fmt.Errorf("%s: %w", key, err)
	}
	return m, true, nil
}

// LatestCheckpoint returns the largest tree size, at most size, that has a
// stored checkpoint (a crash between a manifest and its checkpoint leaves
// one size without).
func LatestCheckpoint(ctx context.Context, st Store, size int64) (int64, error) {
	keys, err := st.List(ctx, "checkpoint/")
	if err != nil {
		return 0, err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		n, err := parseInt(strings.TrimPrefix(keys[i], "checkpoint/"))
		if err == nil && n <= size {
			return n, nil
		}
	}
	return 0, errors.New("no checkpoint to prove against")
}

// HasCheckpoint reports whether a checkpoint of a tree of size leaves is
// stored.
func HasCheckpoint(ctx context.Context, st Store, size int64) (bool, error) {
	_, err := st.Get(ctx, checkpointKey(size))
	if errors.Is(err, fs.ErrNotExist) || isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// HashStore keeps a tree's stored hashes (tlog's storage order), so
// that a leaf's proof needs no pass over the archive.
type HashStore interface {
	tlog.HashReader
	// Add stores the hashes that leaf n (whose line is given) adds;
	// leaves are added in order.
	Add(n int64, line []byte) error
}

// MemoryHashes is a HashStore in memory (64 bytes a leaf, about).
type MemoryHashes struct{ h []tlog.Hash }

// ReadHashes implements tlog.HashReader.
func (m *MemoryHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(m.h)) {
			return nil, errors.New("hash not stored")
		}
		out[i] = m.h[x]
	}
	return out, nil
}

// Add implements HashStore.
func (m *MemoryHashes) Add(n int64, line []byte) error {
	hs, err := tlog.StoredHashes(n, line, m)
	m.h = append(m.h, hs...)
	return err
}

// ProveLeaf proves that leaf, whose line is given, is in the tree of size
// leaves signed by that size's checkpoint; hr holds the tree's stored
// hashes up to at least size.
func ProveLeaf(ctx context.Context, st Store, hr tlog.HashReader, size, leaf int64, line []byte) (Proof, error) {
	if leaf >= size {
		return Proof{}, fmt.Errorf("leaf %d is not yet under a checkpoint (tree size %d)", leaf, size)
	}
	cp, err := st.Get(ctx, checkpointKey(size))
	if err != nil {
		return Proof{}, fmt.Errorf("checkpoint %d: %w", size, err)
	}
	rp, err := tlog.ProveRecord(size, leaf, hr)
	if err != nil {
		return Proof{}, err
	}
	p := Proof{Leaf: leaf, Line: string(line), TreeSize: size, Checkpoint: string(cp)}
	for _, h := range rp {
		p.Path = append(p.Path, base64.StdEncoding.EncodeToString(h[:]))
	}
	return p, nil
}

// CheckProof verifies a proof alone: the checkpoint's signature and
// origin, and the leaf's inclusion in the tree it signs.
func CheckProof(p Proof, v note.Verifier, origin string) error {
	if origin == "" {
		origin = v.Name()
	}
	size, root, err := openCheckpoint([]byte(p.Checkpoint), VerifyOptions{Verifier: v, Origin: origin})
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if size != p.TreeSize {
		return fmt.Errorf("the proof is for %d leaves, the checkpoint signs %d", p.TreeSize, size)
	}
	var rp tlog.RecordProof
	for _, s := range p.Path {
		h, err := unb64(s)
		if err != nil {
			return err
		}
		rp = append(rp, h)
	}
	if err := tlog.CheckRecord(rp, size, root, p.Leaf, tlog.RecordHash([]byte(p.Line))); err != nil {
		return fmt.Errorf("leaf %d is not in the signed tree: %w", p.Leaf, err)
	}
	return nil
}

// ReadLeaves calls fn with every leaf of the archive, in order, one
// segment in memory at a time. It does not verify (Verify does).
func ReadLeaves(ctx context.Context, st Store, fn func(Leaf) error) error {
	for n := int64(0); ; {
		seg, ok, err := ReadSegment(ctx, st, n)
		if err != nil || !ok {
			return err
		}
		for _, line := range seg.Lines {
			var l Leaf
			if err := json.Unmarshal(line, &l); err != nil {
				return fmt.Errorf("%s: %w", seg.Manifest.Segment, err)
			}
			if err := fn(l); err != nil {
				return err
			}
		}
		n = seg.Manifest.LastLeaf + 1
	}
}

// Tail follows how far an archive has come, reading each manifest once,
// by key: for waiting on the archiver (tests, the bench) without listing.
type Tail struct {
	Store   Store
	Leaves  int64  // in the log so far
	LastSeq uint64 // the last stream sequence archived
}

// Update reads the manifests stored since the last call.
func (t *Tail) Update(ctx context.Context) error {
	for {
		m, ok, err := ReadSegmentManifest(ctx, t.Store, t.Leaves)
		if err != nil || !ok {
			return err
		}
		t.Leaves, t.LastSeq = m.LastLeaf+1, m.LastSeq
	}
}
