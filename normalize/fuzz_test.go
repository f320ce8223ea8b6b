package normalize

import (
	"errors"
	"testing"
)

// seed adds every fixture record of a cloud (by origin prefix) to f.
func seed(f *testing.F, prefix string) {
	for _, r := range corpus(f) {
		if prefix == "" || len(r.origin) >= len(prefix) && r.origin[:len(prefix)] == prefix {
			f.Add(r.raw)
		}
	}
}

// fuzzMapper checks the contract: never a panic; either a valid OCSF event
// with the input's bytes in raw_data, or an error.
func fuzzMapper(f *testing.F, prefix string, hint Format) {
	seed(f, prefix)
	s := loadSchema(f)
	n := Normalizer{NoProcessedTime: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := n.Normalize(raw, hint)
		if err != nil {
			if ev != nil {
				t.Fatal("event with error")
			}
			return
		}
		if errs := s.Validate(ev.JSON); len(errs) > 0 {
			t.Fatalf("invalid OCSF for %q: %v", raw, errors.Join(errs...))
		}
		if ev.UID == "" {
			t.Fatal("empty uid")
		}
	})
}

func FuzzCloudTrail(f *testing.F) { fuzzMapper(f, "aws/", FormatCloudTrail) }
func FuzzGCP(f *testing.F)        { fuzzMapper(f, "gcp/", FormatGCPAudit) }
func FuzzAzure(f *testing.F)      { fuzzMapper(f, "azure/", FormatAzureREST) }
func FuzzNormalize(f *testing.F)  { fuzzMapper(f, "", FormatUnknown) }

// FuzzSplit: any document splits or errors, and Sniff never panics.
func FuzzSplit(f *testing.F) {
	seed(f, "")
	f.Add([]byte(`{"Records":[{"a":1}]}`))
	f.Add([]byte("{'records': [{'time': 'x\n'}]}"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		raws, err := SplitAny(doc)
		if err == nil {
			for _, r := range raws {
				_ = Sniff(r.Bytes)
			}
		}
		if fixed, ok := repairJSON(doc); ok && len(fixed) < len(doc) {
			t.Fatalf("repair shrank %q to %q", doc, fixed)
		}
	})
}
