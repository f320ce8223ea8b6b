package daemon

import (
	"strings"
	"testing"
)

func TestHostMember(t *testing.T) {
	for in, want := range map[string]string{
		"tk-1":                   "tk-1",
		"tk-1.prod.example.net":  "tk-1_prod_example_net",
		"ü":                      "__",
		strings.Repeat("a", 100): strings.Repeat("a", 64),
	} {
		if got := hostMember(in); got != want {
			t.Errorf("hostMember(%q) = %q, want %q", in, got, want)
		}
	}
}
