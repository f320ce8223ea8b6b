package worm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

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
// keeps the tree's stored hashes (about 64 bytes a leaf).
func Prove(ctx context.Context, st Store, uid string) (Proof, error) {
	cps, err := st.List(ctx, "checkpoint/")
	if err != nil || len(cps) == 0 {
		return Proof{}, fmt.Errorf("no checkpoint to prove against: %v", err)
	}
	cp, err := st.Get(ctx, cps[len(cps)-1])
	if err != nil {
		return Proof{}, err
	}
	n, err := note.Open(cp, nil)
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		n, err = unverified.Note, nil // verified by whoever checks the proof
	}
	if err != nil {
		return Proof{}, err
	}
	_, size, _, err := parseCheckpoint(n.Text)
	if err != nil {
		return Proof{}, err
	}
	manifests, err := st.List(ctx, "manifest/")
	if err != nil {
		return Proof{}, err
	}
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(stored)) {
				return nil, errors.New("hash not stored")
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	p := Proof{Leaf: -1, TreeSize: size, Checkpoint: string(cp)}
	var leaves int64
	for _, mkey := range manifests {
		mb, err := st.Get(ctx, mkey)
		if err != nil {
			return Proof{}, err
		}
		var m Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			return Proof{}, fmt.Errorf("%s: %w", mkey, err)
		}
		seg, err := st.Get(ctx, m.Segment)
		if err != nil {
			return Proof{}, err
		}
		content, err := decompress(seg)
		if err != nil {
			return Proof{}, fmt.Errorf("%s: %w", m.Segment, err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'}) {
			if leaves >= size {
				break
			}
			if p.Leaf < 0 {
				var l Leaf
				if json.Unmarshal(line, &l) == nil && l.MsgID == uid {
					p.Leaf, p.Line = leaves, string(line)
				}
			}
			hs, err := tlog.StoredHashes(leaves, line, hr)
			if err != nil {
				return Proof{}, err
			}
			stored = append(stored, hs...)
			leaves++
		}
	}
	if p.Leaf < 0 {
		return Proof{}, ErrNotArchived
	}
	rp, err := tlog.ProveRecord(size, p.Leaf, hr)
	if err != nil {
		return Proof{}, err
	}
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
	manifests, err := st.List(ctx, "manifest/")
	if err != nil {
		return err
	}
	for _, mkey := range manifests {
		mb, err := st.Get(ctx, mkey)
		if err != nil {
			return err
		}
		var m Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			return fmt.Errorf("%s: %w", mkey, err)
		}
		seg, err := st.Get(ctx, m.Segment)
		if err != nil {
			return err
		}
		content, err := decompress(seg)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Segment, err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(content, []byte{'\n'}), []byte{'\n'}) {
			var l Leaf
			if err := json.Unmarshal(line, &l); err != nil {
				return fmt.Errorf("%s: %w", m.Segment, err)
			}
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}
