package registry

import (
	"os"
	"testing"
)

// Every folder under collectors/ (but this one) is a collector and must be
// in the registry under its name; an unregistered one would silently never
// run.
func TestEveryCollectorFolderIsRegistered(t *testing.T) {
	ents, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	folders := 0
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "registry" || e.Name() == "testdata" {
			continue
		}
		folders++
		f, ok := factories[e.Name()]
		if !ok {
			t.Errorf("collectors/%s is not in the registry", e.Name())
			continue
		}
		cfg := f.NewConfig()
		if cfg.Base().Type != e.Name() {
			t.Errorf("collectors/%s: default config has type %q", e.Name(), cfg.Base().Type)
		}
		if cfg.Base().PollInterval <= 0 {
			t.Errorf("collectors/%s: no default poll interval", e.Name())
		}
	}
	if folders != len(factories) {
		t.Errorf("%d collector folders, %d registry entries", folders, len(factories))
	}
}

func TestTypes(t *testing.T) {
	if got := Default.Types(); len(got) == 0 || got[0] != "files" {
		t.Errorf("Types() = %v", got)
	}
	if _, ok := Default.NewSourceConfig("nope"); ok {
		t.Error("unknown type accepted")
	}
}
