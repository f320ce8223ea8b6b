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

// decodeGCP agrees with json.Unmarshal into gcpEntry on every fixture
// record and the awkward cases.
func TestDecodeGCPMatchesUnmarshal(t *testing.T) {
	recs := [][]byte{
		[]byte(`{"insertId":"a","protoPayload":{"@type":"x","methodName":"m","status":{"code":7},"authorizationInfo":[{"granted":false}],"extra":[1]},"z":null}`),
		[]byte(`{"protoPayload":null,"resource":{"type":"t"}}`),
	}
	for _, r := range corpus(t) {
		if rec, f, _, err := unwrap(r.raw, r.hint); err == nil && f == FormatGCPAudit {
			recs = append(recs, rec)
		}
	}
	for _, raw := range recs {
		var a, b gcpEntry
		errA := decodeGCP(raw, &a)
		errB := json.Unmarshal(raw, &b, decodeOpts)
		if (errA == nil) != (errB == nil) {
			if errA != nil && strings.Contains(errA.Error(), "not a string") {
				continue
			}
			t.Errorf("%.80s: decodeGCP err %v, Unmarshal err %v", raw, errA, errB)
			continue
		}
		if errA == nil && !reflect.DeepEqual(a, b) {
			t.Errorf("%.80s: decodeGCP %+v\nUnmarshal %+v", raw, a, b)
		}
		if errA == nil && a.ProtoPayload != nil && isObject(a.ProtoPayload.RequestMetadata) {
			var x, y gcpRequestMetadata
			errX := decodeRequestMetadata(a.ProtoPayload.RequestMetadata, &x)
			errY := json.Unmarshal(a.ProtoPayload.RequestMetadata, &y, decodeOpts)
			if (errX == nil) != (errY == nil) || !reflect.DeepEqual(x, y) {
				t.Errorf("%.80s: requestMetadata %+v (%v), Unmarshal %+v (%v)", raw, x, errX, y, errY)
			}
		}
	}
}

func FuzzDecodeGCP(f *testing.F) {
	seed(f, "gcp/")
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a, b gcpEntry
		errA := decodeGCP(raw, &a)
		errB := json.Unmarshal(raw, &b, decodeOpts)
		if errA == nil && errB == nil && !reflect.DeepEqual(a, b) {
			t.Fatalf("%q: decodeGCP %+v, Unmarshal %+v", raw, a, b)
		}
	})
}
