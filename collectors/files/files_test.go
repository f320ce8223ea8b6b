package files

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/normalize"
)

func newCollector(t *testing.T, dir string, pageSize int) *Collector {
	t.Helper()
	cfg := NewConfig()
	cfg.Name, cfg.Path, cfg.PageSize = "t", config.FilePath(dir), pageSize
	cfg.Settle = time.Minute
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(cfg, collectors.Settings{})
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// age makes a file look settled (not written for an hour).
func age(t *testing.T, p string) {
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

// drain polls until nothing more comes, returning every record.
func drain(t *testing.T, c *Collector, cur []byte) ([]collectors.Record, []byte) {
	t.Helper()
	var all []collectors.Record
	for range 10000 {
		page, err := c.Poll(context.Background(), cur)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Records...)
		cur = page.Next
		if !page.More {
			return all, cur
		}
	}
	t.Fatal("no end")
	return nil, nil
}

func raws(recs []collectors.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Raw)
	}
	return out
}

const (
	ct1 = `{"eventVersion":"1.08","eventID":"1"}`
	ct2 = `{"eventVersion":"1.08","eventID":"2"}`
)

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string
		data   []byte
		want   []string
		format normalize.Format
	}{
		{"trail file gz", "AWSLogs/1/CloudTrail/us-east-1/2024/01/01/x.json.gz", gz(t, []byte(`{"Records":[`+ct1+`,`+ct2+`]}`)), []string{ct1, ct2}, normalize.FormatCloudTrail},
		{"trail file plain", "a.json", []byte("{\"Records\": [\n  " + ct1 + "\n]}\n"), []string{ct1}, normalize.FormatCloudTrail},
		{"json array", "a.json", []byte("[" + ct1 + ", " + ct2 + "]"), []string{ct1, ct2}, normalize.FormatUnknown},
		{"jsonl", "a.jsonl", []byte(ct1 + "\n\n" + ct2 + "\r\n"), []string{ct1, ct2}, normalize.FormatUnknown},
		{"ndjson gz", "a.ndjson.gz", gz(t, []byte(ct1+"\n"+ct2+"\n")), []string{ct1, ct2}, normalize.FormatUnknown},
		{"json lines in .json (GCS sink)", "00:00:00_00:59:59_S0.json", []byte(`{"insertId":"a"}` + "\n" + `{"insertId":"b"}` + "\n"), []string{`{"insertId":"a"}`, `{"insertId":"b"}`}, normalize.FormatUnknown},
		{"azure export", "PT1H.json", []byte(`{"records":[{"time":"t"}]}`), []string{`{"time":"t"}`}, normalize.FormatAzureExport},
		{"azure rest", "r.json", []byte(`{"value":[{"eventDataId":"e"}],"nextLink":null}`), []string{`{"eventDataId":"e"}`}, normalize.FormatAzureREST},
		{"gcp entries.list", "e.json", []byte(`{"entries":[{"insertId":"i"}]}`), []string{`{"insertId":"i"}`}, normalize.FormatGCPAudit},
		{"cloudwatch envelope", "cw.json", []byte(`{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","message":"{\"eventID\":\"1\"}"}]}`), []string{`{"eventID":"1"}`}, normalize.FormatUnknown},
		{"single record", "one.json", []byte("{\n  \"insertId\": \"x\"\n}\n"), []string{"{\n  \"insertId\": \"x\"\n}"}, normalize.FormatUnknown},
		{"digest skipped", "d.json.gz", gz(t, []byte(`{"awsAccountId":"1","digestStartTime":"x","logFiles":[]}`)), nil, normalize.FormatUnknown},
		{"empty file", "e.jsonl", nil, nil, normalize.FormatUnknown},
		{"other extension ignored", "notes.txt", []byte(ct1), nil, normalize.FormatUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			age(t, write(t, dir, tc.file, tc.data))
			recs, _ := drain(t, newCollector(t, dir, 100), nil)
			if got := raws(recs); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("records = %q, want %q", got, tc.want)
			}
			for _, r := range recs {
				if r.Format != tc.format || r.Err != nil || !strings.HasPrefix(r.Origin, tc.file) {
					t.Errorf("record %+v: want format %q and origin in %s", r, tc.format, tc.file)
				}
			}
		})
	}
}

func TestFormatOverride(t *testing.T) {
	dir := t.TempDir()
	age(t, write(t, dir, "a.jsonl", []byte(ct1+"\n")))
	cfg := NewConfig()
	cfg.Name, cfg.Path, cfg.Format = "t", config.FilePath(dir), "cloudtrail"
	recs, _ := drain(t, New(cfg, collectors.Settings{}), nil)
	if len(recs) != 1 || recs[0].Format != normalize.FormatCloudTrail {
		t.Errorf("records = %+v", recs)
	}
}

// Paging through many files gives every record once, in order, and a
// repeated poll of the same cursor gives the same page.
func TestPagingAndResume(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for f := range 4 {
		var lines []string
		for i := range 5 {
			l := `{"f":` + string(rune('0'+f)) + `,"i":` + string(rune('0'+i)) + `}`
			lines = append(lines, l)
			want = append(want, l)
		}
		name := "d/" + string(rune('a'+f)) + ".jsonl"
		if f%2 == 1 {
			name = "d/" + string(rune('a'+f)) + ".json"
			b, _ := json.Marshal(map[string]any{"Records": jsonRaw(lines)})
			age(t, write(t, dir, name, b))
			continue
		}
		age(t, write(t, dir, name, []byte(strings.Join(lines, "\n")+"\n")))
	}
	c := newCollector(t, dir, 3)
	var got []string
	var cur []byte
	for range 100 {
		p1, err := c.Poll(context.Background(), cur)
		if err != nil {
			t.Fatal(err)
		}
		p2, _ := newCollector(t, dir, 3).Poll(context.Background(), cur) // a fresh process
		if strings.Join(raws(p1.Records), "") != strings.Join(raws(p2.Records), "") || string(p1.Next) != string(p2.Next) {
			t.Fatalf("same cursor, different page:\n%q\n%q", raws(p1.Records), raws(p2.Records))
		}
		if len(p1.Records) > 3 {
			t.Fatalf("page of %d records, page size 3", len(p1.Records))
		}
		got = append(got, raws(p1.Records)...)
		cur = p1.Next
		if !p1.More {
			break
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Everything done: the next poll is empty.
	rest, _ := drain(t, c, cur)
	if len(rest) != 0 {
		t.Errorf("re-read %d records", len(rest))
	}
}

func jsonRaw(ss []string) []json.RawMessage {
	out := make([]json.RawMessage, len(ss))
	for i, s := range ss {
		out[i] = json.RawMessage(s)
	}
	return out
}

func TestFileStillBeingWritten(t *testing.T) {
	dir := t.TempDir()
	c := newCollector(t, dir, 100)
	p := write(t, dir, "live.jsonl", []byte(ct1+"\n"+`{"eventVersion":"1.08","eve`))
	recs, cur := drain(t, c, nil)
	if got := raws(recs); len(got) != 1 || got[0] != ct1 {
		t.Fatalf("partial line read: %q", got)
	}
	// The writer finishes the line and appends another.
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`ntID":"2"}` + "\n" + `{"eventID":"3"}`)
	f.Close()
	recs, cur = drain(t, c, cur)
	if got := raws(recs); len(got) != 1 || got[0] != ct2 {
		t.Fatalf("after append: %q", got)
	}
	// The last line has no newline; once the file settles it is a record.
	age(t, p)
	recs, cur = drain(t, c, cur)
	if got := raws(recs); len(got) != 1 || got[0] != `{"eventID":"3"}` {
		t.Fatalf("settled tail: %q", got)
	}
	if recs, _ = drain(t, c, cur); len(recs) != 0 {
		t.Errorf("re-read %q", raws(recs))
	}

	// A gzipped document still being written is waited for.
	full := gz(t, []byte(`{"Records":[`+ct1+`,`+ct2+`]}`))
	g := write(t, dir, "trail.json.gz", full[:len(full)/2])
	if recs, cur = drain(t, c, cur); len(recs) != 0 {
		t.Fatalf("truncated gz gave %q", raws(recs))
	}
	write(t, dir, "trail.json.gz", full)
	age(t, g)
	if recs, _ = drain(t, c, cur); len(recs) != 2 {
		t.Fatalf("completed gz gave %q", raws(recs))
	}
}

func TestCorruptFileGoesToDeadLetter(t *testing.T) {
	dir := t.TempDir()
	junk := bytes.Repeat([]byte("\x1f\x8b not gzip "), 40000) // > one chunk
	age(t, write(t, dir, "bad.json.gz", junk))
	age(t, write(t, dir, "bad.json", []byte(`{"Records":[{"a":1},`)))
	c := newCollector(t, dir, 100)
	recs, cur := drain(t, c, nil)
	var joined []byte
	parts := 0
	for _, r := range recs {
		if r.Err == nil {
			t.Errorf("record without error: %+v", r)
		}
		if strings.HasPrefix(r.Origin, "bad.json.gz#part=") {
			joined = append(joined, r.Raw...)
			parts++
		}
	}
	if !bytes.Equal(joined, junk) || parts < 2 {
		t.Errorf("dead-letter parts (%d) do not rebuild the file", parts)
	}
	if len(recs) != parts+1 {
		t.Errorf("%d records, want %d", len(recs), parts+1)
	}
	if recs, _ = drain(t, c, cur); len(recs) != 0 {
		t.Errorf("corrupt file sent again")
	}
}

func TestCursorForgetsDeletedFiles(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.jsonl", []byte(ct1+"\n"))
	age(t, a)
	age(t, write(t, dir, "b.jsonl", []byte(ct2+"\n")))
	c := newCollector(t, dir, 100)
	_, cur := drain(t, c, nil)
	os.Remove(a)
	_, cur = drain(t, c, cur)
	var st cursor
	json.Unmarshal(cur, &st)
	if _, ok := st.Files["a.jsonl"]; ok || len(st.Files) != 1 {
		t.Errorf("cursor = %s", cur)
	}
	// New files are picked up.
	age(t, write(t, dir, "sub/c.jsonl", []byte(`{"c":1}`+"\n")))
	recs, _ := drain(t, c, cur)
	if len(recs) != 1 {
		t.Errorf("new file: %q", raws(recs))
	}
}

func TestRewrittenDocumentIsReadAgain(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "a.json", []byte(`[`+ct1+`]`))
	age(t, p)
	c := newCollector(t, dir, 100)
	_, cur := drain(t, c, nil)
	write(t, dir, "a.json", []byte(`[`+ct1+`,`+ct2+`]`))
	age(t, p)
	os.Chtimes(p, time.Now().Add(-30*time.Minute), time.Now().Add(-30*time.Minute))
	recs, _ := drain(t, c, cur)
	if len(recs) != 2 { // ids dedupe the repeat downstream
		t.Errorf("rewritten document: %q", raws(recs))
	}
}

func TestBadCursor(t *testing.T) {
	if _, err := newCollector(t, t.TempDir(), 1).Poll(context.Background(), []byte("nope")); err == nil {
		t.Error("bad cursor accepted")
	}
}

// The bundled sample data is read completely, and every record is JSON.
func TestExamples(t *testing.T) {
	recs, _ := drain(t, newCollector(t, "../../examples/data", 500), nil)
	if len(recs) < 900 {
		t.Errorf("only %d records in examples/data", len(recs))
	}
	for _, r := range recs {
		if r.Err != nil || !json.Valid(r.Raw) {
			t.Errorf("%s: not a JSON record (%v)", r.Origin, r.Err)
		}
	}
}

// A bad line in a gzipped JSON Lines file is one bad record, even first.
func TestBadFirstLineIsOneRecord(t *testing.T) {
	dir := t.TempDir()
	age(t, write(t, dir, "x.jsonl.gz", gz(t, []byte("{broken\n"+ct1+"\n"))))
	recs, _ := drain(t, newCollector(t, dir, 100), nil)
	if got := raws(recs); len(got) != 2 || got[0] != "{broken" || got[1] != ct1 || recs[0].Err != nil {
		t.Errorf("records = %q", got)
	}
}
