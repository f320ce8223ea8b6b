package registry

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Every folder under collectors/ (but this one) is a collector and must be
// in the registry under its name; an unregistered one would silently never
// run.
// TestEveryCollectorFolderIsRegistered: a collector folder provides the
// types named after it (files; cloudtrail_api and cloudtrail_s3 in
// cloudtrail; gcp_audit_api in gcpaudit), and
// every type is in the registry with sane defaults.
func TestEveryCollectorFolderIsRegistered(t *testing.T) {
	ents, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	owned := 0
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "registry" || e.Name() == "internal" || e.Name() == "testdata" {
			continue
		}
		n := 0
		for typ, f := range factories {
			// gcp_audit_api lives in gcpaudit/, cloudtrail_s3 in cloudtrail/.
			if !strings.HasPrefix(strings.ReplaceAll(typ, "_", ""), e.Name()) {
				continue
			}
			n++
			cfg := f.NewConfig()
			if cfg.Base().Type != typ {
				t.Errorf("%s: default config has type %q", typ, cfg.Base().Type)
			}
			if cfg.Base().PollInterval <= 0 {
				t.Errorf("%s: no default poll interval", typ)
			}
		}
		if n == 0 {
			t.Errorf("collectors/%s is not in the registry", e.Name())
		}
		owned += n
	}
	if owned != len(factories) {
		t.Errorf("%d registry entries, %d of them named after a collector folder", len(factories), owned)
	}
}

func TestTypes(t *testing.T) {
	if got := Default.Types(); len(got) == 0 || !slices.Contains(got, "files") {
		t.Errorf("Types() = %v", got)
	}
	if _, ok := Default.NewSourceConfig("nope"); ok {
		t.Error("unknown type accepted")
	}
}
