package aws

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/trailkeeper/trailkeeper/normalize"
)

// LoadDir serves a folder of trail data, for demos and tests: every file
// becomes an object of bucket (its key: its path below dir, with "/"), and
// every CloudTrail record in any of them an event for LookupEvents. With
// shift, times move so that the newest record is 10 minutes old, because
// LookupEvents keeps 90 days and sample data is older. Each file moves on
// its own (samples from many years sit side by side): its records' times
// keep their spacing, and a trail file key's date and delivery time move
// to 10 minutes ago. It returns how many events it loaded.
func (s *Server) LoadDir(bucket, dir string, shift bool) (int, error) {
	type file struct {
		key     string
		body    []byte
		records []normalize.Raw
		newest  time.Time
	}
	var files []file
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f := file{key: filepath.ToSlash(rel), body: body}
		content := body
		if len(body) > 2 && body[0] == 0x1f && body[1] == 0x8b {
			if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
				content, _ = io.ReadAll(zr)
			}
		}
		raws, _ := normalize.SplitAny(content)
		for _, r := range raws {
			if r.Format == normalize.FormatCloudTrail || normalize.Sniff(r.Bytes) == normalize.FormatCloudTrail {
				f.records = append(f.records, r)
				if t := recordTime(r.Bytes); t.After(f.newest) {
					f.newest = t
				}
			}
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", dir, err)
	}
	target := s.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	n := 0
	for _, f := range files {
		key := f.key
		var delta time.Duration
		if shift {
			key = shiftKey(key, target)
			if !f.newest.IsZero() {
				delta = target.Sub(f.newest)
			}
		}
		s.PutObject(bucket, key, Object{Body: f.body})
		for _, r := range f.records {
			if e, ok := eventOf(r.Bytes, delta); ok {
				s.AddEvents(e)
				n++
			}
		}
	}
	return n, nil
}

func recordTime(raw []byte) time.Time {
	var r struct {
		EventTime time.Time `json:"eventTime"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.EventTime
}

// eventOf makes a LookupEvents event of a CloudTrail record, its time moved
// by delta.
func eventOf(raw []byte, delta time.Duration) (Event, bool) {
	var rec map[string]any
	if json.Unmarshal(raw, &rec) != nil {
		return Event{}, false
	}
	str := func(k string) string { s, _ := rec[k].(string); return s }
	t, err := time.Parse(time.RFC3339, str("eventTime"))
	if err != nil || str("eventID") == "" {
		return Event{}, false
	}
	account := str("recipientAccountId")
	if id, ok := rec["userIdentity"].(map[string]any); ok && account == "" {
		account, _ = id["accountId"].(string)
	}
	if account == "" {
		account = DefaultAccount
	}
	if delta != 0 {
		t = t.Add(delta)
		rec["eventTime"] = t.UTC().Format(time.RFC3339)
		raw, _ = json.Marshal(rec)
	}
	return Event{Account: account, Region: str("awsRegion"), ID: str("eventID"), Name: str("eventName"), Source: str("eventSource"), Time: t, Raw: string(raw)}, true
}

var keyTimeRE = regexp.MustCompile(`^(.*/)(\d{4}/\d{2}/\d{2})(/[^/]*?_)(\d{8}T\d{4}(?:\d{2})?Z)(.*)$`)

// shiftKey moves the date folder and the delivery time in a trail file key
// to the time to.
func shiftKey(key string, to time.Time) string {
	m := keyTimeRE.FindStringSubmatch(key)
	if m == nil {
		return key
	}
	layout := "20060102T1504Z"
	if len(m[4]) == len("20060102T150405Z") {
		layout = "20060102T150405Z"
	}
	if _, err := time.Parse(layout, m[4]); err != nil {
		return key
	}
	t := to.UTC()
	return m[1] + t.Format("2006/01/02") + m[3] + t.Format(layout) + m[5]
}
