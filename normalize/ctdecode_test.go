package normalize

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
)

// decodeCT agrees with json.Unmarshal into ctRecord on every fixture
// record, and on the awkward cases.
func TestDecodeCTMatchesUnmarshal(t *testing.T) {
	recs := [][]byte{
		[]byte(`{"eventName":"A\u0042","eventTime":null,"x\"y":1,"requestParameters":{"a":[1,2]},"userIdentity":{"type":"Root","extra":true}}`),
		[]byte(`{"eventName":"a","eventName":"b"}`),
	}
	for _, r := range corpus(t) {
		rec, _, _, err := unwrap(r.raw, r.hint)
		if err == nil {
			recs = append(recs, rec)
		}
	}
	for _, raw := range recs {
		var a, b ctRecord
		errA := decodeCT(raw, &a)
		errB := json.Unmarshal(raw, &b, decodeOpts)
		if (errA == nil) != (errB == nil) {
			if errA != nil && strings.Contains(errA.Error(), "not a string") {
				continue // both reject; the messages differ
			}
			t.Errorf("%.80s: decodeCT err %v, Unmarshal err %v", raw, errA, errB)
			continue
		}
		if errA == nil && !reflect.DeepEqual(a, b) {
			t.Errorf("%.80s: decodeCT %+v\nUnmarshal %+v", raw, a, b)
		}
	}
}

func FuzzDecodeCT(f *testing.F) {
	seed(f, "aws/")
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a, b ctRecord
		errA := decodeCT(raw, &a)
		errB := json.Unmarshal(raw, &b, decodeOpts)
		if errA == nil && errB == nil && !reflect.DeepEqual(a, b) {
			t.Fatalf("%q: decodeCT %+v, Unmarshal %+v", raw, a, b)
		}
	})
}
