package normalize

import (
	stdjson "encoding/json"
	"strings"
	"testing"
	"time"
)

// benchRecords are the fixture records of one cloud that map.
func benchRecords(b *testing.B, prefix string) [][]byte {
	var out [][]byte
	n := Normalizer{NoProcessedTime: true}
	for _, r := range corpus(b) {
		if !strings.HasPrefix(r.origin, prefix) {
			continue
		}
		rec, _, _, err := unwrap(r.raw, r.hint)
		if err != nil {
			continue
		}
		if _, err := n.Normalize(rec, FormatUnknown); err == nil {
			out = append(out, rec)
		}
	}
	if len(out) == 0 {
		b.Fatal("no records")
	}
	return out
}

// benchSetup returns the records and reports their mean size per op.
func benchSetup(b *testing.B, prefix string) [][]byte {
	recs := benchRecords(b, prefix)
	var bytes int64
	for _, r := range recs {
		bytes += int64(len(r))
	}
	b.SetBytes(bytes / int64(len(recs)))
	b.ReportAllocs()
	b.ResetTimer()
	return recs
}

func benchMapper(b *testing.B, prefix string, f Format) {
	recs := benchSetup(b, prefix)
	n := Normalizer{NoProcessedTime: true}
	for i := 0; b.Loop(); i++ {
		if _, err := n.Normalize(recs[i%len(recs)], f); err != nil {
			b.Fatal(err)
		}
	}
}

// naive is the baseline's work on one record.
func naive(b *testing.B, rec []byte) {
	var m map[string]any
	if err := stdjson.Unmarshal(rec, &m); err != nil {
		b.Fatal(err)
	}
	if _, err := stdjson.Marshal(m); err != nil {
		b.Fatal(err)
	}
}

// benchNaive is the baseline: decode into map[string]any and encode it
// back with encoding/json, the least a mapper that keeps everything does.
func benchNaive(b *testing.B, prefix string) {
	recs := benchSetup(b, prefix)
	for i := 0; b.Loop(); i++ {
		naive(b, recs[i%len(recs)])
	}
}

// benchVersus runs the mapper and the baseline on the same record in turn
// and reports how many times faster the mapper is. On a shared machine the
// two separate benchmarks can land in different load and their ratio
// swings from 1.2 to 2.4; interleaved record by record, both see the same.
func benchVersus(b *testing.B, prefix string, f Format) {
	recs := benchSetup(b, prefix)
	n := Normalizer{NoProcessedTime: true}
	var mapper, baseline time.Duration
	for i := 0; b.Loop(); i++ {
		rec := recs[i%len(recs)]
		t0 := time.Now()
		if _, err := n.Normalize(rec, f); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		naive(b, rec)
		mapper += t1.Sub(t0)
		baseline += time.Since(t1)
	}
	b.ReportMetric(float64(baseline)/float64(mapper), "x-faster")
	b.ReportMetric(float64(mapper.Nanoseconds())/float64(b.N), "mapper-ns/event")
	b.ReportMetric(float64(baseline.Nanoseconds())/float64(b.N), "baseline-ns/event")
}

func BenchmarkCloudTrail(b *testing.B)               { benchMapper(b, "aws/", FormatCloudTrail) }
func BenchmarkCloudTrailBaseline(b *testing.B)       { benchNaive(b, "aws/") }
func BenchmarkCloudTrailVersusBaseline(b *testing.B) { benchVersus(b, "aws/", FormatCloudTrail) }
func BenchmarkGCP(b *testing.B)                      { benchMapper(b, "gcp/", FormatGCPAudit) }
func BenchmarkGCPBaseline(b *testing.B)              { benchNaive(b, "gcp/") }
func BenchmarkGCPVersusBaseline(b *testing.B)        { benchVersus(b, "gcp/", FormatGCPAudit) }
func BenchmarkAzure(b *testing.B)                    { benchMapper(b, "azure/", FormatUnknown) }
func BenchmarkAzureBaseline(b *testing.B)            { benchNaive(b, "azure/") }
func BenchmarkAzureVersusBaseline(b *testing.B)      { benchVersus(b, "azure/", FormatUnknown) }
