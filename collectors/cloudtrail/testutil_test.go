package cloudtrail

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"io"
	"testing"
)

func md5sum(b []byte) [16]byte { return md5.Sum(b) }

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
