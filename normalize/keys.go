package normalize

import (
	"bytes"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// topKeys is the set of top-level member names of a JSON object, read
// without decoding the values: envelope and format detection run on every
// record, so they must cost a scan, not a decode.
type topKeys map[string]bool

var keyDecoders = sync.Pool{New: func() any {
	return jsontext.NewDecoder(bytes.NewReader(nil), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
}}

var keySets = sync.Pool{New: func() any { return topKeys{} }}

// scanKeys returns the keys of the object in raw, or nil when raw is not a
// valid JSON object. Release it with put.
func scanKeys(raw []byte) topKeys {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	dec := keyDecoders.Get().(*jsontext.Decoder)
	defer keyDecoders.Put(dec)
	dec.Reset(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	keys := keySets.Get().(topKeys)
	if _, err := dec.ReadToken(); err != nil {
		keys.put()
		return nil
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			keys.put()
			return nil
		}
		keys[tok.String()] = true
		if err := dec.SkipValue(); err != nil {
			keys.put()
			return nil
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		keys.put()
		return nil
	}
	return keys
}

func (k topKeys) put() {
	if k == nil {
		return
	}
	clear(k)
	keySets.Put(k)
}
