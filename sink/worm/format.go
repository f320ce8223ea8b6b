package worm

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailkeeper/trailkeeper/internal/jsonscan"
)

// Leaf is one archived message: one JSON line of a segment. Its leaf hash
// (RFC 6962, tlog.RecordHash) is over the line's bytes without the newline.
type Leaf struct {
	Leaf    int64             `json:"leaf"`
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Subject string            `json:"subject"`
	MsgID   string            `json:"msg_id,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Data is the message when it is JSON (events, attestations, run
	// records); DataBase64 holds any other bytes (a dead letter's).
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
}

// encodeLeaf writes l as its line (no newline). encoding/json sorts header
// keys and keeps Data's bytes, so the line is a function of the message.
//
// Data is the last field: the line is the leaf encoded without it, with
// `,"data":` and the compacted data spliced in before the closing brace —
// the same bytes encoding/json writes, without its second validation and
// compaction of a RawMessage (together two thirds of the archiver's time).
func encodeLeaf(l Leaf, data []byte) ([]byte, error) {
	// Our events are compact already: checked in one fast pass, they are
	// used as they are; anything else goes through json.Compact.
	var compact []byte
	isJSON := true
	if jsonscan.Valid(data) && compactAlready(data) {
		compact = data
	} else {
		var buf bytes.Buffer
		isJSON = len(bytes.TrimSpace(data)) > 0 && json.Compact(&buf, data) == nil
		compact = buf.Bytes()
	}
	if !isJSON {
		l.DataBase64 = base64.StdEncoding.EncodeToString(data)
	}
	l.Data = nil
	var b bytes.Buffer
	b.Grow(256 + len(compact))
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	line := bytes.TrimSuffix(b.Bytes(), []byte{'\n'})
	if !isJSON {
		return line, nil
	}
	line = append(line[:len(line)-1], `,"data":`...)
	line = append(line, compact...)
	return append(line, '}'), nil
}

// compactAlready: valid JSON v has no whitespace outside its strings.
func compactAlready(v []byte) bool {
	in := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\n' || c == '\t' || c == '\r'):
			return false
		}
	}
	return true
}

// Manifest describes one segment and commits the log up to its end.
type Manifest struct {
	Version int `json:"version"`
	// Leaves [FirstLeaf, LastLeaf] and the stream sequences they hold.
	FirstLeaf int64  `json:"first_leaf"`
	LastLeaf  int64  `json:"last_leaf"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Segment   string `json:"segment"`
	// SegmentSHA256 is of the stored (compressed) object, ContentSHA256 of
	// its uncompressed lines.
	SegmentSHA256  string `json:"segment_sha256"`
	ContentSHA256  string `json:"content_sha256"`
	SegmentVersion string `json:"segment_version,omitempty"`
	// TreeSize and RootHash (base64) of the log after this segment;
	// Frontier (base64) is the right edge of that tree, from which the
	// next root is computed without reading old segments.
	TreeSize int64    `json:"tree_size"`
	RootHash string   `json:"root_hash"`
	Frontier []string `json:"frontier"`
	// PrevManifest and its SHA-256 chain the manifests ("" for the first).
	PrevManifest       string `json:"prev_manifest,omitempty"`
	PrevManifestSHA256 string `json:"prev_manifest_sha256,omitempty"`
}

// Object keys. Numbers are zero-padded to 20 digits so that keys sort as
// numbers do.
func segmentKey(day time.Time, first, last int64) string {
	return fmt.Sprintf("seg/dt=%s/%020d-%020d.jsonl.zst", day.UTC().Format("2006-01-02"), first, last)
}
func manifestKey(first int64) string   { return fmt.Sprintf("manifest/%020d.json", first) }
func checkpointKey(size int64) string  { return fmt.Sprintf("checkpoint/%020d", size) }
func hexSHA256(b []byte) string        { s := sha256.Sum256(b); return fmt.Sprintf("%x", s) }
func b64(h tlog.Hash) string           { return base64.StdEncoding.EncodeToString(h[:]) }
func parseInt(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

func unb64(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("not a base64 SHA-256 hash: %q", s)
	}
	copy(h[:], b)
	return h, nil
}

// frontier is the right edge of an RFC 6962 tree: the roots of its
// perfect subtrees, largest first. It computes every root in O(log n)
// memory, so neither the archiver nor verify keeps old leaves.
type frontier struct {
	n      int64
	hashes []tlog.Hash
}

func (f *frontier) add(h tlog.Hash) {
	f.hashes = append(f.hashes, h)
	for k := f.n; k&1 == 1; k >>= 1 {
		l := len(f.hashes)
		f.hashes[l-2] = tlog.NodeHash(f.hashes[l-2], f.hashes[l-1])
		f.hashes = f.hashes[:l-1]
	}
	f.n++
}

// root is the tree hash of the f.n leaves added (RFC 6962 MTH).
func (f *frontier) root() tlog.Hash {
	if f.n == 0 {
		return tlog.Hash(sha256.Sum256(nil))
	}
	h := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.hashes[i], h)
	}
	return h
}

func (f *frontier) encode() []string {
	out := make([]string, len(f.hashes))
	for i, h := range f.hashes {
		out[i] = b64(h)
	}
	return out
}

func decodeFrontier(n int64, enc []string) (frontier, error) {
	f := frontier{n: n}
	for _, s := range enc {
		h, err := unb64(s)
		if err != nil {
			return f, err
		}
		f.hashes = append(f.hashes, h)
	}
	want := 0
	for k := n; k > 0; k >>= 1 {
		want += int(k & 1)
	}
	if len(f.hashes) != want {
		return f, errors.New("frontier does not match the tree size")
	}
	return f, nil
}

// checkpointText is the body of a C2SP tlog checkpoint:
// origin, tree size, base64 root hash, each on its line.
func checkpointText(origin string, size int64, root tlog.Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, b64(root))
}

// parseCheckpoint reads a verified note's text.
func parseCheckpoint(text string) (origin string, size int64, root tlog.Hash, err error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return "", 0, root, errors.New("checkpoint: fewer than three lines")
	}
	if size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || size < 0 {
		return "", 0, root, fmt.Errorf("checkpoint: tree size %q", lines[1])
	}
	root, err = unb64(lines[2])
	return lines[0], size, root, err
}

// ManifestKey is the object key of the manifest of the segment whose first
// leaf is first.
func ManifestKey(first int64) string { return manifestKey(first) }
