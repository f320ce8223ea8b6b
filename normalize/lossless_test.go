package normalize

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// namedFields are the JSON names of the named (mapped) fields of a struct.
func namedFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && !strings.Contains(opts, "embed") {
			out[name] = true
		}
	}
	return out
}

// Every member of a source record is either mapped by name or kept under
// unmapped: nothing the cloud said is dropped. Checked at the top level and
// in the nested objects the mappers decode into structs.
func TestLossless(t *testing.T) {
	n := Normalizer{NoProcessedTime: true}
	levels := map[Format][]struct {
		path   []string // where the object is in the record
		prefix string   // its prefix in unmapped
		typ    reflect.Type
	}{
		FormatCloudTrail: {
			{nil, "", reflect.TypeFor[ctRecord]()},
			{[]string{"userIdentity"}, "userIdentity.", reflect.TypeFor[ctIdentity]()},
			{[]string{"userIdentity", "sessionContext"}, "userIdentity.sessionContext.", reflect.TypeFor[ctSessionContext]()},
		},
		FormatGCPAudit: {
			{nil, "", reflect.TypeFor[gcpEntry]()},
			{[]string{"protoPayload"}, "protoPayload.", reflect.TypeFor[gcpAuditLog]()},
			{[]string{"protoPayload", "authenticationInfo"}, "protoPayload.authenticationInfo.", reflect.TypeFor[gcpAuthn]()},
		},
	}
	checked := 0
	for _, r := range corpus(t) {
		ev, err := n.Normalize(r.raw, r.hint)
		if err != nil {
			continue
		}
		rec, f, _, _ := unwrap(r.raw, r.hint)
		var src map[string]any
		if json.Unmarshal(rec, &src) != nil {
			continue
		}
		for _, lv := range levels[f] {
			obj := src
			for _, p := range lv.path {
				obj, _ = obj[p].(map[string]any)
			}
			named := namedFields(lv.typ)
			for k := range obj {
				if named[k] {
					continue
				}
				if _, ok := ev.OCSF.Unmapped[lv.prefix+k]; !ok {
					// lower-cased keys match named fields without case
					if named[lowerFirst(k, named)] {
						continue
					}
					t.Errorf("%s: %s%s is neither mapped nor in unmapped", r.origin, lv.prefix, k)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// lowerFirst finds the named field k matches without case, if any.
func lowerFirst(k string, named map[string]bool) string {
	for n := range named {
		if strings.EqualFold(n, k) {
			return n
		}
	}
	return ""
}
