package normalize

import (
	"bufio"
	"bytes"
	stdjson "encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/trailkeeper/trailkeeper/internal/ocsfschema"
)

// record is one fixture record and where it came from.
type record struct {
	origin string
	raw    []byte
	hint   Format
}

// corpus returns every record of testdata/fixtures: the lines of JSON Lines
// files and what Split finds in the other files.
func corpus(t testing.TB) []record {
	t.Helper()
	var out []record
	err := filepath.WalkDir("testdata/fixtures", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".md") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/fixtures", p)
		if strings.HasSuffix(p, ".ndjson") || strings.HasSuffix(p, ".jsonl") {
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(nil, 8<<20)
			for n := 1; sc.Scan(); n++ {
				if len(bytes.TrimSpace(sc.Bytes())) > 0 {
					out = append(out, record{origin: rel + ":" + strconv.Itoa(n), raw: bytes.Clone(sc.Bytes())})
				}
			}
			return sc.Err()
		}
		recs, err := Split(b)
		if errors.Is(err, ErrDigest) {
			out = append(out, record{origin: rel, raw: b})
			return nil
		}
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		for i, r := range recs {
			out = append(out, record{origin: rel + "#" + strconv.Itoa(i), raw: r.Bytes, hint: r.Format})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if stdjson.Unmarshal(a, &x) != nil || stdjson.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

var (
	schemaOnce sync.Once
	schema     *ocsfschema.Schema
	schemaErr  error
)

func loadSchema(t testing.TB) *ocsfschema.Schema {
	schemaOnce.Do(func() { schema, schemaErr = ocsfschema.Load("../internal/ocsfschema/testdata/v1.8.0") })
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schema
}

// Every record of every fixture maps to a valid OCSF 1.8.0 event, or is
// one of the few that are rightly not events (TestNotEventsGolden).
func TestEveryFixtureIsValidOCSF(t *testing.T) {
	s := loadSchema(t)
	n := Normalizer{NoProcessedTime: true}
	recs := corpus(t)
	valid := 0
	for _, r := range recs {
		ev, err := n.Normalize(r.raw, r.hint)
		if err != nil {
			continue // listed, with the reason, in testdata/golden/not-events.txt
		}
		if want, err := json.Marshal(ev.OCSF, encodeOpts); err != nil || !sameJSON(ev.JSON, want) {
			t.Errorf("%s: the hand encoding differs from json.Marshal (%v)", r.origin, err)
		}
		if errs := s.Validate(ev.JSON); len(errs) > 0 {
			t.Errorf("%s: invalid OCSF:\n  %v", r.origin, errors.Join(errs...))
			continue
		}
		valid++
	}
	t.Logf("%d records, %d valid events", len(recs), valid)
	if valid < 900 {
		t.Errorf("only %d valid events", valid)
	}
}
