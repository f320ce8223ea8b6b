// Package checkpoint stores the cursors of source streams.
//
// A cursor is opaque bytes owned by a collector. The pipeline saves one only
// after every event polled before it is acknowledged by the stream, so a
// saved cursor never runs ahead of published data.
package checkpoint

import (
	"context"
	"errors"
	"strings"
)

// Store keeps one cursor per stream key.
//
// Load returns (nil, nil) for a key that was never saved. Save replaces the
// cursor of key durably: when it returns nil, a crash right after it will
// not bring back an older cursor. Both may be retried after an error, and
// may be called concurrently for different keys. Keys are any non-empty
// string; stores escape them as their backend needs.
type Store interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Save(ctx context.Context, key string, cursor []byte) error
}

var errEmptyKey = errors.New("checkpoint: empty key")

// EscapeKey maps any key to [-_.A-Za-z0-9=]+, reversibly: every other byte,
// and '=' itself, becomes =XX. It suits KV keys and file names alike.
func EscapeKey(key string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0 && i < len(key)-1 && key[i-1] != '.':
			// KV keys may not start or end with '.', nor hold "..".
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
