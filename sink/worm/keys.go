package worm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// DefaultOrigin names the log when a key is generated without a name.
const DefaultOrigin = "trailkeeper.archive"

// GenerateKey returns a new Ed25519 signer key and its verifier key, in
// the sumdb/note text forms. name is the checkpoints' origin.
func GenerateKey(name string) (signer, verifier string, err error) {
	return note.GenerateKey(rand.Reader, name)
}

// LoadOrCreateKey reads a signer key from path, or creates one there
// (mode 0600) with its verifier key in path+".pub" when the file does
// not exist. created says which.
func LoadOrCreateKey(path string) (s note.Signer, verifier string, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, gerr := GenerateKey(DefaultOrigin)
		if gerr != nil {
			return nil, "", false, gerr
		}
		if err := os.WriteFile(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, "", false, err
		}
		if err := os.WriteFile(path+".pub", []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", false, err
		}
		s, err := note.NewSigner(skey)
		return s, vkey, true, err
	}
	if err != nil {
		return nil, "", false, err
	}
	s, err = ParseSigner(string(b))
	if err != nil {
		return nil, "", false, fmt.Errorf("%s: %w", path, err)
	}
	pub, _ := os.ReadFile(path + ".pub")
	return s, strings.TrimSpace(string(pub)), false, nil
}

// ParseSigner reads a signer key (surrounding space ignored).
func ParseSigner(key string) (note.Signer, error) {
	return note.NewSigner(strings.TrimSpace(key))
}

// ParseVerifier reads a verifier key (surrounding space ignored).
func ParseVerifier(key string) (note.Verifier, error) {
	return note.NewVerifier(strings.TrimSpace(key))
}
