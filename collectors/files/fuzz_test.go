package files

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/config"
)

// FuzzRead: any file content, under any of the names we read, is split into
// records or dead-lettered, never a panic or an endless loop, and a second
// pass publishes nothing new.
func FuzzRead(f *testing.F) {
	for _, p := range []string{
		"../../examples/data/aws/exports/otel-cloudwatch-subscription.json",
		"../../examples/data/azure/docs-export-records.json",
		"../../examples/data/gcp/plaso-logging-export.jsonl",
		"../../examples/data/aws/stratus/aws.persistence.iam-backdoor-role.json",
	} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, uint8(0))
		}
	}
	f.Add([]byte(`{"Records":[{"a":1},{"b":2}]}`), uint8(1))
	f.Add([]byte("{\"a\":1}\n{\"b\""), uint8(2))
	f.Add([]byte("\x1f\x8b\x08\x00"), uint8(3))
	names := []string{"x.json", "x.json.gz", "x.jsonl", "x.ndjson.gz"}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		dir := t.TempDir()
		p := filepath.Join(dir, names[int(which)%len(names)])
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		os.Chtimes(p, old, old)
		cfg := NewConfig()
		cfg.Path, cfg.PageSize = config.FilePath(dir), 7
		c := New(cfg, collectors.Settings{})
		var cur []byte
		for i := 0; ; i++ {
			if i > len(data)+10 {
				t.Fatal("paging does not end")
			}
			page, err := c.Poll(context.Background(), cur)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Records {
				if len(r.Raw) == 0 && r.Err == nil {
					t.Fatal("empty record")
				}
			}
			cur = page.Next
			if !page.More {
				break
			}
		}
		page, err := c.Poll(context.Background(), cur)
		if err != nil || len(page.Records) != 0 {
			t.Fatalf("second pass: %d records, %v", len(page.Records), err)
		}
	})
}
