package jsonscan

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

func TestMembers(t *testing.T) {
	tests := []struct {
		in   string
		want []string // name, value, name, value...
	}{
		{`{}`, nil},
		{` { } `, nil},
		{`{"a":1}`, []string{`"a"`, `1`}},
		{`{ "a" : "x\"}" , "b\\":[1,{"c":"]"}], "d":null,"e":-1.5e3 }`,
			[]string{`"a"`, `"x\"}"`, `"b\\"`, `[1,{"c":"]"}]`, `"d"`, `null`, `"e"`, `-1.5e3`}},
		{`{"a":{"b":{}},"c":true}`, []string{`"a"`, `{"b":{}}`, `"c"`, `true`}},
	}
	for _, tt := range tests {
		var got []string
		err := Members([]byte(tt.in), func(n, v []byte) error {
			got = append(got, string(n), string(v))
			return nil
		})
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Members(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestTruncated(t *testing.T) {
	for _, in := range []string{``, `[`, `{`, `{"a"`, `{"a":`, `{"a":"`, `{"a":[1`, `{"a":1,`, `{"a" 1}`} {
		if err := Members([]byte(in), func(n, v []byte) error { return nil }); err == nil {
			t.Errorf("Members(%q): no error", in)
		}
	}
}

// FuzzMembers checks the walk against encoding/json on valid objects, and
// that invalid input never panics.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":"\\\"","b":[{"c":[]}],"d":false}`, `{"a" : { "b" : "}" } }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var got []string
		err := Members(in, func(n, v []byte) error {
			got = append(got, string(n), string(v))
			return nil
		})
		var m map[string]json.RawMessage
		if json.Unmarshal(in, &m) != nil {
			return // not an object: anything but a panic goes
		}
		if err != nil {
			t.Fatalf("valid object %q: %v", in, err)
		}
		seen := map[string]string{}
		for i := 0; i < len(got); i += 2 {
			var name string
			if err := json.Unmarshal([]byte(got[i]), &name); err != nil {
				t.Fatalf("name %q: %v", got[i], err)
			}
			seen[name] = got[i+1] // the last of duplicate names wins, as in encoding/json
		}
		if len(seen) != len(m) {
			t.Fatalf("%q: %d names, encoding/json has %d", in, len(seen), len(m))
		}
		for k, v := range m {
			if seen[k] != string(v) {
				t.Fatalf("%q: member %q = %q, encoding/json has %q", in, k, seen[k], v)
			}
		}
	})
}

// FuzzValid checks the validator against jsontext, which the mappers used
// before and whose rules (RFC 8259, valid UTF-8, paired surrogates) it
// keeps, and ValidMembers against Members on what is valid.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `"\ud83d\ude00"`, `"\ud83d"`, `-0.5e+3`, `01`, `{"a":[1,2,{"b":null}],"c":"\u00e9"}`, "\"\xff\"", `{"a":1,}`, `[1,]`, `tru`, ` {"a" : true } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := jsontext.Value(in).IsValid()
		if got := Valid(in); got != want {
			t.Fatalf("Valid(%q) = %v, jsontext says %v", in, got, want)
		}
		var a, b []string
		errA := ValidMembers(in, func(n, v []byte) error { a = append(a, string(n), string(v)); return nil })
		isObj := want && jsontext.Value(in).Kind() == '{'
		if (errA == nil) != isObj {
			t.Fatalf("ValidMembers(%q): %v; valid object: %v", in, errA, isObj)
		}
		if isObj {
			_ = Members(in, func(n, v []byte) error { b = append(b, string(n), string(v)); return nil })
			if !slices.Equal(a, b) {
				t.Fatalf("ValidMembers(%q) = %q, Members = %q", in, a, b)
			}
		}
	})
}
