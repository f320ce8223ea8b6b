package worm

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func s3Client(url string) *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
	})
}

// TestEveryPutCarriesSHA256: AWS refuses writes to an Object Lock bucket
// without a checksum; no local S3 server enforces it, so the request
// itself is checked here: a SHA-256 checksum (header or trailer) that
// matches the body, If-None-Match, and the object's own retention.
func TestEveryPutCarriesSHA256(t *testing.T) {
	var mu sync.Mutex
	var puts []*http.Request
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		puts, bodies = append(puts, r), append(bodies, b)
		mu.Unlock()
		w.Header().Set("ETag", `"x"`)
		w.Header().Set("x-amz-version-id", "v1")
	}))
	defer srv.Close()
	st := S3Store{Client: s3Client(srv.URL), Bucket: "archive", Prefix: "tk/", Mode: types.ObjectLockRetentionModeCompliance, Retention: 24 * time.Hour}
	data := []byte(strings.Repeat("segment bytes ", 1000))
	v, err := st.Put(context.Background(), "seg/dt=2026-11-23/x.jsonl.zst", data)
	if err != nil || v != "v1" {
		t.Fatalf("put: %q %v", v, err)
	}
	r, body := puts[0], string(bodies[0])
	sum := sha256.Sum256(data)
	want := base64.StdEncoding.EncodeToString(sum[:])
	got := r.Header.Get("X-Amz-Checksum-Sha256")
	if got == "" && strings.Contains(strings.ToLower(r.Header.Get("X-Amz-Trailer")), "x-amz-checksum-sha256") {
		// Sent as a trailer of an aws-chunked body.
		if i := strings.Index(body, "x-amz-checksum-sha256:"); i >= 0 {
			got = strings.TrimSpace(strings.SplitN(body[i+len("x-amz-checksum-sha256:"):], "\r\n", 2)[0])
		}
	}
	if got != want {
		t.Errorf("SHA-256 checksum %q, want %q (headers %v)", got, want, r.Header)
	}
	if r.Header.Get("If-None-Match") != "*" {
		t.Error("no If-None-Match: * (an object could be replaced)")
	}
	if r.Header.Get("X-Amz-Object-Lock-Mode") != "COMPLIANCE" || r.Header.Get("X-Amz-Object-Lock-Retain-Until-Date") == "" {
		t.Errorf("object lock headers: %v", r.Header)
	}
}
