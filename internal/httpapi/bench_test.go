package httpapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
)

// benchIndex builds (once, then reuses from the temp dir) an index of n
// changes of the synthetic corpus. TRAILKEEPER_BENCH_CHANGES sets n
// (default 1 000 000).
func benchIndex(b *testing.B) (*index.Index, int) {
	b.Helper()
	n := 1_000_000
	if s := os.Getenv("TRAILKEEPER_BENCH_CHANGES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("trailkeeper-bench-index-v1-%d.db", n))
	ix, err := index.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	st, err := ix.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if st.Changes != int64(n) {
		ix.Close()
		index.Remove(path)
		if ix, err = index.Open(ctx, path); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		var seq uint64 = 1
		for from := 0; from < n; from += 10000 {
			msgs := indextest.Messages(from, min(from+10000, n), n)
			indextest.Apply(b, ix, msgs, seq)
			seq += uint64(len(msgs))
		}
		if err := ix.Optimize(ctx); err != nil {
			b.Fatal(err)
		}
		b.Logf("built an index of %d changes in %s (%.0f changes/s)", n, time.Since(start).Round(time.Second), float64(n)/time.Since(start).Seconds())
	}
	b.Cleanup(func() { ix.Close() })
	return ix, n
}

// BenchmarkOnCall measures what on-call waits for, through the HTTP
// handlers (JSON included, no network): who-changed on a random resource
// (by exact id, by id prefix, by name fragment) and a run's view, with
// p50 and p99 over every request of the run.
func BenchmarkOnCall(b *testing.B) {
	ix, n := benchIndex(b)
	q := &httpapi.Query{Index: ix}
	h := httpapi.Handler(prometheus.NewRegistry(), func() ([]string, error) { return nil, nil }, "", q.Routes()...)
	get := func(b *testing.B, path string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		path func() string
	}{
		{"who-changed/exact", func() string {
			c := indextest.At(rng.IntN(n), n)
			return "/v1/changes?mutating=true&limit=50&resource=" + url.QueryEscape(c.Resource)
		}},
		{"who-changed/prefix", func() string {
			c := indextest.At(rng.IntN(n), n)
			return "/v1/changes?mutating=true&limit=50&resource=" + url.QueryEscape(c.Resource[:len(c.Resource)-2])
		}},
		{"who-changed/fragment", func() string {
			c := indextest.At(rng.IntN(n), n)
			return "/v1/changes?mutating=true&limit=50&resource=" + url.QueryEscape(c.Name[2:])
		}},
		{"who-changed/actor", func() string {
			c := indextest.At(rng.IntN(n), n)
			return "/v1/changes?limit=50&actor=" + url.QueryEscape(c.Actor)
		}},
		{"run-view", func() string {
			return "/v1/runs/" + url.PathEscape(fmt.Sprintf("gh:org/infra:%d", rng.IntN(n/1000))) + "/changes?limit=1000"
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				path := tc.path()
				start := time.Now()
				get(b, path)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			if st, err := ix.Stats(context.Background()); err == nil {
				b.ReportMetric(float64(st.Bytes)/float64(n), "index-bytes/change")
			}
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
