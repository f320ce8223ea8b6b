package worm

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/sumdb/note"
)

// copyArchive copies an archive folder, writable, for one tampering.
func copyArchive(t *testing.T, src string) string {
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

type tamperer struct {
	t   *testing.T
	dir string
}

func (tp tamperer) keys(prefix string) []string {
	ks, err := DirStore{Root: tp.dir}.List(context.Background(), prefix)
	if err != nil {
		tp.t.Fatal(err)
	}
	return ks
}

func (tp tamperer) path(key string) string { return filepath.Join(tp.dir, filepath.FromSlash(key)) }

func (tp tamperer) remove(key string) {
	if err := os.Remove(tp.path(key)); err != nil {
		tp.t.Fatal(err)
	}
}

func (tp tamperer) manifest(key string) Manifest {
	var m Manifest
	b, _ := os.ReadFile(tp.path(key))
	if err := json.Unmarshal(b, &m); err != nil {
		tp.t.Fatal(err)
	}
	return m
}

// editSegment rewrites the lines of the segment a manifest names, then
// fixes the manifest's segment hashes, as a careful forger would.
func (tp tamperer) editSegment(mkey string, edit func([][]byte) [][]byte) {
	m := tp.manifest(mkey)
	stored, _ := os.ReadFile(tp.path(m.Segment))
	content, err := decompress(stored)
	if err != nil {
		tp.t.Fatal(err)
	}
	lines := edit(bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'}))
	content = append(bytes.Join(lines, []byte{'\n'}), '\n')
	enc, _ := zstd.NewWriter(nil)
	stored = enc.EncodeAll(content, nil)
	enc.Close()
	if err := os.WriteFile(tp.path(m.Segment), stored, 0o644); err != nil {
		tp.t.Fatal(err)
	}
	m.SegmentSHA256, m.ContentSHA256 = hexSHA256(stored), hexSHA256(content)
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(tp.path(mkey), mb, 0o644); err != nil {
		tp.t.Fatal(err)
	}
}

type tamperCase struct {
	name   string
	tamper func(tp tamperer)
	anchor bool
	want   string // the check that must be among the findings
}

// tamperCases are forgeries of the files under an archive (a folder, or
// the files versitygw keeps an S3 bucket's objects in).
func tamperCases(t *testing.T, ver note.Verifier) []tamperCase {
	newest := func(tp tamperer, prefix string) string { ks := tp.keys(prefix); return ks[len(ks)-1] }
	middle := func(tp tamperer, prefix string) string { ks := tp.keys(prefix); return ks[len(ks)/2] }
	return []tamperCase{
		{"untouched", func(tamperer) {}, true, ""},
		{"flip one byte of a segment", func(tp tamperer) {
			p := tp.path(tp.manifest(middle(tp, "manifest/")).Segment)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			_ = os.WriteFile(p, b, 0o644)
		}, false, "segment-hash"},
		{"modify an event and fix the segment hashes", func(tp tamperer) {
			tp.editSegment(middle(tp, "manifest/"), func(ls [][]byte) [][]byte {
				ls[1] = bytes.Replace(ls[1], []byte(`"class_uid":6003`), []byte(`"class_uid":6004`), 1)
				return ls
			})
		}, false, "checkpoint-root"},
		{"delete a middle segment", func(tp tamperer) {
			tp.remove(tp.manifest(middle(tp, "manifest/")).Segment)
		}, false, "segment-missing"},
		{"delete a segment and its manifest", func(tp tamperer) {
			mk := middle(tp, "manifest/")
			tp.remove(tp.manifest(mk).Segment)
			tp.remove(mk)
		}, false, "manifest-gap"},
		{"delete the newest segment and manifest", func(tp tamperer) {
			mk := newest(tp, "manifest/")
			tp.remove(tp.manifest(mk).Segment)
			tp.remove(mk)
		}, false, "checkpoint-beyond-log"},
		{"reorder two events", func(tp tamperer) {
			tp.editSegment(middle(tp, "manifest/"), func(ls [][]byte) [][]byte {
				ls[0], ls[1] = ls[1], ls[0]
				return ls
			})
		}, false, "seq-order"},
		{"insert a duplicate event", func(tp tamperer) {
			tp.editSegment(middle(tp, "manifest/"), func(ls [][]byte) [][]byte {
				return slices.Insert(ls, 1, ls[0])
			})
		}, false, "leaf-duplicate"},
		{"truncate the tail with its checkpoint", func(tp tamperer) {
			mk := newest(tp, "manifest/")
			m := tp.manifest(mk)
			tp.remove(m.Segment)
			tp.remove(mk)
			tp.remove(checkpointKey(m.TreeSize))
		}, true, "anchor-truncated"},
		{"replace a checkpoint with one signed by another key", func(tp tamperer) {
			key := middle(tp, "checkpoint/")
			b, _ := os.ReadFile(tp.path(key))
			n, _ := note.Open(b, note.VerifierList(ver))
			other, _ := keys(t)
			forged, _ := note.Sign(&note.Note{Text: n.Text}, other)
			_ = os.WriteFile(tp.path(key), forged, 0o644)
		}, false, "checkpoint-signature"},
	}
}

// checkTamper verifies st after tc and checks its finding.
func checkTamper(t *testing.T, st Store, ver note.Verifier, anchor []byte, tc tamperCase) {
	t.Helper()
	o := VerifyOptions{Verifier: ver}
	if tc.anchor {
		o.Anchor = anchor
	}
	r, err := Verify(context.Background(), st, o)
	if err != nil {
		t.Fatal(err)
	}
	var checks []string
	for _, f := range r.Findings {
		checks = append(checks, f.Check)
	}
	switch {
	case tc.want == "" && !r.OK():
		t.Errorf("untouched archive: %v", strs(r.Findings))
	case tc.want != "" && !slices.Contains(checks, tc.want):
		t.Errorf("findings %v lack %q:\n%s", checks, tc.want, strings.Join(strs(r.Findings), "\n"))
	}
	if tc.want == "anchor-truncated" {
		o.Anchor = nil
		if r, _ := Verify(context.Background(), st, o); !r.OK() {
			t.Errorf("without the anchor the truncated archive should look whole: %v", strs(r.Findings))
		}
	}
}

func newestCheckpoint(t *testing.T, st Store) []byte {
	ks, _ := st.List(context.Background(), "checkpoint/")
	b, err := st.Get(context.Background(), ks[len(ks)-1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTamperMatrix: every forgery of a folder archive gives its own
// finding, and the untouched archive verifies.
func TestTamperMatrix(t *testing.T) {
	dir, ver := archiveMessages(t, 150)
	anchor := newestCheckpoint(t, DirStore{Root: dir})
	for _, tc := range tamperCases(t, ver) {
		t.Run(tc.name, func(t *testing.T) {
			tp := tamperer{t, copyArchive(t, dir)}
			tc.tamper(tp)
			checkTamper(t, DirStore{Root: tp.dir}, ver, anchor, tc)
		})
	}
}

func strs(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}
