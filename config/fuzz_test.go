package config_test

import (
	"os"
	"testing"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
)

// FuzzParse: any bytes give a config or Problems, never a panic.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../examples/quickstart.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{"{}", "sources:\n  - {name: a, type: files, path: .}\n", "nats: {url: x, password: ${env:X}}", "a: &x [*x]", "log: [\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "fuzz.yaml", registry.Default)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("cfg %v with err %v", cfg, err)
		}
	})
}
