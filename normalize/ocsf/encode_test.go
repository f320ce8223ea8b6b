package ocsf

import (
	"reflect"
	"strings"
	"testing"

	stdjson "encoding/json"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// fill sets every field reachable from v to a non-zero value, so that a
// field the hand encoder forgets cannot hide.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[jsontext.Value]() {
			v.SetBytes([]byte("{ \"k\" : [1, \"a b\\\"\"] }"))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range []string{"b.key", "a \"quoted\" key"} {
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, n)
			m.SetMapIndex(reflect.ValueOf(k), e)
		}
		v.Set(m)
	case reflect.String:
		v.SetString("s\"\\\n\t\x01é\u2028<>&" + string(rune('a'+*n%26)))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(*n%2 == 0)
	default:
		panic("fill: " + v.Kind().String())
	}
}

func sameJSON(t *testing.T, a, b []byte) {
	t.Helper()
	var x, y any
	if err := stdjson.Unmarshal(a, &x); err != nil {
		t.Fatalf("hand encoding is not JSON: %v\n%s", err, a)
	}
	if err := stdjson.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, y) {
		t.Errorf("hand encoding differs from json.Marshal:\n%s\n%s", a, b)
	}
}

func TestAppendJSONMatchesMarshal(t *testing.T) {
	var full Event
	n := 0
	fill(reflect.ValueOf(&full).Elem(), &n)
	want, err := json.Marshal(&full, json.Deterministic(true))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, full.AppendJSON(nil), want)
	// And the zero event: required members written, the rest omitted.
	var zero Event
	want, _ = json.Marshal(&zero, json.Deterministic(true))
	sameJSON(t, zero.AppendJSON(nil), want)
}

func TestAppendCompact(t *testing.T) {
	got := appendCompact(nil, []byte("{ \"a b\" : [ 1 ,\n\t\"x \\\" y\" ] }"))
	if string(got) != `{"a b":[1,"x \" y"]}` {
		t.Errorf("%s", got)
	}
}

// appendString round-trips every special byte at every position.
func TestAppendStringWords(t *testing.T) {
	specials := []byte{'"', '\\', 0, 0x1f, '\n', 0x7f, 0x20, 'a'}
	for n := range 20 {
		for pos := range n {
			for _, c := range specials {
				s := []byte(strings.Repeat("x", n))
				s[pos] = c
				got := appendString(nil, string(s))
				var back string
				if err := stdjson.Unmarshal(got, &back); err != nil || back != string(s) {
					t.Fatalf("appendString(%q) = %s (%v)", s, got, err)
				}
			}
		}
	}
}

func TestAppendCompactStrings(t *testing.T) {
	for in, want := range map[string]string{
		`{ "a\\" : "b\\\" c" }`:   `{"a\\":"b\\\" c"}`,
		"[ \"x y\" , 1 ]":         `["x y",1]`,
		`"unterminated  string`:   `"unterminated  string`,
		"{\"k\":\t\"\\\\\\\\\" }": "{\"k\":\"\\\\\\\\\"}",
	} {
		if got := string(appendCompact(nil, []byte(in))); got != want {
			t.Errorf("appendCompact(%q) = %q, want %q", in, got, want)
		}
	}
}
