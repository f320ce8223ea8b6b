package aws

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Object is one S3 object.
type Object struct {
	Body     []byte
	Metadata map[string]string // x-amz-meta-*, without the prefix
	Modified time.Time
}

// PutObject stores an object (zero Modified: the server's clock).
func (s *Server) PutObject(bucket, key string, o Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.Modified.IsZero() {
		o.Modified = s.now()
	}
	if s.s3[bucket] == nil {
		s.s3[bucket] = map[string]*Object{}
	}
	s.s3[bucket][key] = &o
}

// DeleteObject removes an object, as a test that loses a file does.
func (s *Server) DeleteObject(bucket, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.s3[bucket], key)
}

// Object returns a stored object, or nil.
func (s *Server) Object(bucket, key string) *Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s3[bucket][key]
}

// Gzip compresses b, as CloudTrail stores its files.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

type truncateKey struct{}

func withTruncate(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, truncateKey{}, n)
}

func s3Op(r *http.Request) string {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case bucket == "":
		return "Unsupported"
	case key == "" && r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
		return "ListObjectsV2"
	case key != "" && r.Method == http.MethodGet:
		return "GetObject"
	case key != "" && r.Method == http.MethodHead:
		return "HeadObject"
	}
	return "Unsupported"
}

func (s *Server) s3Call(c *call, _ []byte) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(c.r.URL.Path, "/"), "/")
	switch c.op {
	case "S3.ListObjectsV2":
		s.listObjects(c, bucket)
	case "S3.GetObject", "S3.HeadObject":
		s.getObject(c, bucket, key)
	default:
		c.fail(http.StatusNotImplemented, "NotImplemented", c.r.Method+" "+c.r.URL.String())
	}
}

func (s *Server) listObjects(c *call, bucket string) {
	q := c.r.URL.Query()
	prefix, after, token := q.Get("prefix"), q.Get("start-after"), q.Get("continuation-token")
	maxKeys := 1000
	if n, err := strconv.Atoi(q.Get("max-keys")); err == nil && n > 0 && n < maxKeys {
		maxKeys = n
	}
	if token != "" {
		after = token // our continuation token is the last key returned
	}
	s.mu.Lock()
	objs, ok := s.s3[bucket]
	var keys []string
	for k := range objs {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	if !ok {
		c.fail(http.StatusNotFound, "NoSuchBucket", bucket)
		return
	}
	slices.Sort(keys)
	truncated := len(keys) > maxKeys
	if truncated {
		keys = keys[:maxKeys]
	}
	enc := func(k string) string { return xmlEscape(k) }
	if q.Get("encoding-type") == "url" {
		enc = func(k string) string { return xmlEscape(url.QueryEscape(k)) }
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%t</IsTruncated>`,
		xmlEscape(bucket), enc(prefix), len(keys), maxKeys, truncated)
	s.mu.Lock()
	for _, k := range keys {
		o := objs[k]
		sum := md5.Sum(o.Body)
		fmt.Fprintf(&b, `<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>"%s"</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>`,
			enc(k), o.Modified.UTC().Format("2006-01-02T15:04:05.000Z"), hex.EncodeToString(sum[:]), len(o.Body))
	}
	s.mu.Unlock()
	if truncated {
		fmt.Fprintf(&b, `<NextContinuationToken>%s</NextContinuationToken>`, xmlEscape(keys[len(keys)-1]))
	}
	b.WriteString(`</ListBucketResult>`)
	c.w.Header().Set("Content-Type", "application/xml")
	_, _ = c.w.Write([]byte(b.String()))
}

func (s *Server) getObject(c *call, bucket, key string) {
	s.mu.Lock()
	o := s.s3[bucket][key]
	s.mu.Unlock()
	if o == nil {
		c.fail(http.StatusNotFound, "NoSuchKey", key)
		return
	}
	h := c.w.Header()
	for k, v := range o.Metadata {
		h.Set("X-Amz-Meta-"+k, v)
	}
	sum := md5.Sum(o.Body)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	h.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(o.Body)))
	if c.op == "S3.HeadObject" {
		return
	}
	body := o.Body
	if n, ok := c.r.Context().Value(truncateKey{}).(int); ok && n < len(body) {
		body = body[:n] // Content-Length still says the whole: the client sees a cut
	}
	_, _ = c.w.Write(body)
}
