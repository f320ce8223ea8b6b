package worm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Finding is one thing verify found wrong: the object and the check.
type Finding struct {
	Object string `json:"object"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

func (f Finding) String() string { return f.Object + ": " + f.Check + ": " + f.Detail }

// Report sums a verification up.
type Report struct {
	Findings    []Finding `json:"findings"`
	Segments    int       `json:"segments"`
	Leaves      int64     `json:"leaves"`
	Checkpoints int       `json:"checkpoints"`
	TreeSize    int64     `json:"signed_tree_size"` // of the newest valid checkpoint
}

// OK is true when nothing was found.
func (r Report) OK() bool { return len(r.Findings) == 0 }

// VerifyOptions of Verify.
type VerifyOptions struct {
	Verifier note.Verifier
	// Origin expected in checkpoints; empty: the verifier's key name.
	Origin string
	// Anchor is a checkpoint kept outside the archive: the archive must
	// contain it.
	Anchor []byte
	// OnFinding, if set, gets every finding as it is made.
	OnFinding func(Finding)
}

// Verify checks an archive offline (see README.md for every check). Memory
// stays flat: one segment at a time and the tree's right edge; only the
// roots at segment boundaries are kept, to check checkpoints against.
func Verify(ctx context.Context, st Store, o VerifyOptions) (Report, error) {
	if o.Origin == "" {
		o.Origin = o.Verifier.Name()
	}
	var r Report
	find := func(obj, check, format string, args ...any) {
		f := Finding{Object: obj, Check: check, Detail: fmt.Sprintf(format, args...)}
		r.Findings = append(r.Findings, f)
		if o.OnFinding != nil {
			o.OnFinding(f)
		}
	}
	manifests, err := st.List(ctx, "manifest/")
	if err != nil {
		return r, err
	}
	segments, err := st.List(ctx, "seg/")
	if err != nil {
		return r, err
	}
	referenced := map[string]bool{}
	roots := map[int64]tlog.Hash{0: (&frontier{}).root()}
	var tree frontier
	var lastSeq uint64
	prevKey, prevSum := "", ""
	for _, mkey := range manifests {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		mb, err := st.Get(ctx, mkey)
		if err != nil {
			return r, err
		}
		var m Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			find(mkey, "manifest-parse", "%v", err)
			continue
		}
		switch {
		case m.FirstLeaf > tree.n:
			find(mkey, "manifest-gap", "starts at leaf %d; leaves %d to %d are missing", m.FirstLeaf, tree.n, m.FirstLeaf-1)
		case m.FirstLeaf < tree.n:
			find(mkey, "manifest-overlap", "starts at leaf %d, but %d leaves come before it", m.FirstLeaf, tree.n)
		}
		if m.PrevManifest != prevKey || m.PrevManifestSHA256 != prevSum {
			find(mkey, "manifest-chain", "names previous %q (%s), the archive has %q (%s)", m.PrevManifest, short(m.PrevManifestSHA256), prevKey, short(prevSum))
		}
		prevKey, prevSum = mkey, hexSHA256(mb)
		referenced[m.Segment] = true
		r.Segments++
		stored, err := st.Get(ctx, m.Segment)
		if errors.Is(err, fs.ErrNotExist) || isNotFound(err) {
			find(m.Segment, "segment-missing", "named by %s", mkey)
			tree = frontier{n: m.TreeSize} // resynchronise: later checks still run
			if f, ferr := decodeFrontier(m.TreeSize, m.Frontier); ferr == nil {
				tree = f
			}
			continue
		}
		if err != nil {
			return r, err
		}
		if in, ok := st.(Inspector); ok {
			info, err := in.Inspect(ctx, m.Segment)
			switch {
			case err != nil:
				find(m.Segment, "inspect", "%v", err)
			case m.SegmentVersion != "" && info.Version != m.SegmentVersion:
				find(m.Segment, "version-replaced", "the store serves version %s, the manifest recorded %s", info.Version, m.SegmentVersion)
			}
			checkLock(ctx, in, mkey, find)
			checkLock(ctx, in, m.Segment, find)
		}
		if got := hexSHA256(stored); got != m.SegmentSHA256 {
			find(m.Segment, "segment-hash", "SHA-256 %s, manifest says %s", short(got), short(m.SegmentSHA256))
		}
		content, err := decompress(stored)
		if err != nil {
			find(m.Segment, "segment-decompress", "%v", err)
			continue
		}
		if got := hexSHA256(content); got != m.ContentSHA256 {
			find(m.Segment, "content-hash", "SHA-256 of the lines %s, manifest says %s", short(got), short(m.ContentSHA256))
		}
		lines := bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'})
		if want := m.LastLeaf - m.FirstLeaf + 1; int64(len(lines)) != want {
			find(m.Segment, "leaf-count", "%d lines, the manifest's range holds %d", len(lines), want)
		}
		for i, line := range lines {
			var l Leaf
			if err := json.Unmarshal(line, &l); err != nil {
				find(m.Segment, "leaf-parse", "line %d: %v", i+1, err)
			} else {
				if l.Leaf != tree.n {
					find(m.Segment, "leaf-order", "line %d is leaf %d, expected %d", i+1, l.Leaf, tree.n)
				}
				switch {
				case lastSeq != 0 && l.Seq > lastSeq+1:
					find(m.Segment, "seq-gap", "line %d (leaf %d) has stream sequence %d after %d: %d stream messages are not archived", i+1, l.Leaf, l.Seq, lastSeq, l.Seq-lastSeq-1)
				case l.Seq == lastSeq:
					find(m.Segment, "leaf-duplicate", "line %d (leaf %d) repeats stream sequence %d", i+1, l.Leaf, l.Seq)
				case l.Seq < lastSeq:
					find(m.Segment, "seq-order", "line %d (leaf %d) has stream sequence %d after %d", i+1, l.Leaf, l.Seq, lastSeq)
				}
				lastSeq = l.Seq
			}
			tree.add(tlog.RecordHash(line))
		}
		if first, last, ok := lineSeqs(lines); ok && (first != m.FirstSeq || last != m.LastSeq) {
			find(mkey, "manifest-seq", "names stream sequences %d to %d, its segment holds %d to %d", m.FirstSeq, m.LastSeq, first, last)
		}
		root := tree.root()
		roots[tree.n] = root
		if tree.n != m.TreeSize || b64(root) != m.RootHash {
			find(mkey, "manifest-root", "recomputed tree %d/%s, manifest says %d/%s", tree.n, short(b64(root)), m.TreeSize, short(m.RootHash))
		}
	}
	r.Leaves = tree.n
	for _, s := range segments {
		if !referenced[s] {
			find(s, "segment-unreferenced", "no manifest names it")
		}
	}

	// Checkpoints: signed by the key, for this log, on roots we recomputed.
	cps, err := st.List(ctx, "checkpoint/")
	if err != nil {
		return r, err
	}
	for _, key := range cps {
		b, err := st.Get(ctx, key)
		if err != nil {
			return r, err
		}
		r.Checkpoints++
		if in, ok := st.(Inspector); ok {
			checkLock(ctx, in, key, find)
		}
		size, root, err := openCheckpoint(b, o)
		if err != nil {
			find(key, "checkpoint-signature", "%v", err)
			continue
		}
		if key != checkpointKey(size) {
			find(key, "checkpoint-name", "signs tree size %d, so its name should be %s", size, checkpointKey(size))
		}
		switch got, ok := roots[size]; {
		case size > r.Leaves:
			find(key, "checkpoint-beyond-log", "signs %d leaves, the archive holds %d: its tail is gone", size, r.Leaves)
		case !ok:
			find(key, "checkpoint-unmatched", "signs tree size %d, which ends no segment", size)
		case got != root:
			find(key, "checkpoint-root", "signs root %s for %d leaves, the archive's is %s", short(b64(root)), size, short(b64(got)))
		default:
			r.TreeSize = max(r.TreeSize, size)
		}
	}
	if r.TreeSize != r.Leaves {
		find("checkpoint/", "leaf-count", "the newest valid checkpoint signs %d leaves, the archive holds %d", r.TreeSize, r.Leaves)
	}
	if sl, ok := st.(interface {
		Strays(context.Context) ([]string, error)
	}); ok {
		strays, err := sl.Strays(ctx)
		if err != nil {
			return r, err
		}
		for _, key := range strays {
			find(key, "stray-file", "not an archive object (a write killed midway leaves .tmp-* files; the archiver removes them at start)")
		}
	}
	if o.Anchor != nil {
		size, root, err := openCheckpoint(o.Anchor, o)
		switch got, ok := roots[size]; {
		case err != nil:
			find("anchor", "anchor-signature", "%v", err)
		case size > r.Leaves:
			find("anchor", "anchor-truncated", "the anchor signs %d leaves, the archive holds %d", size, r.Leaves)
		case !ok || got != root:
			find("anchor", "anchor-root", "the archive's tree of %d leaves is not the one the anchor signs", size)
		}
	}
	return r, nil
}

// checkLock reports an object whose retention is missing or over.
func checkLock(ctx context.Context, in Inspector, key string, find func(obj, check, format string, args ...any)) {
	info, err := in.Inspect(ctx, key)
	switch {
	case err != nil:
		find(key, "inspect", "%v", err)
	case info.Mode == "":
		find(key, "retention", "no Object Lock retention: the object can be deleted")
	case info.RetainUntil.Before(time.Now()):
		find(key, "retention", "%s retention ended %s", info.Mode, info.RetainUntil.Format(time.RFC3339))
	}
}

// openCheckpoint verifies a checkpoint note and returns what it signs.
func openCheckpoint(b []byte, o VerifyOptions) (int64, tlog.Hash, error) {
	n, err := note.Open(b, note.VerifierList(o.Verifier))
	if err != nil {
		return 0, tlog.Hash{}, err
	}
	origin, size, root, err := parseCheckpoint(n.Text)
	if err != nil {
		return 0, root, err
	}
	if origin != o.Origin {
		return 0, root, fmt.Errorf("origin %q, expected %q", origin, o.Origin)
	}
	return size, root, nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func isNotFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "NoSuchKey") || strings.Contains(err.Error(), "NotFound"))
}

// lineSeqs reads the stream sequences of a segment's first and last lines.
func lineSeqs(lines [][]byte) (first, last uint64, ok bool) {
	if len(lines) == 0 {
		return 0, 0, false
	}
	var a, b Leaf
	if json.Unmarshal(lines[0], &a) != nil || json.Unmarshal(lines[len(lines)-1], &b) != nil {
		return 0, 0, false
	}
	return a.Seq, b.Seq, true
}
