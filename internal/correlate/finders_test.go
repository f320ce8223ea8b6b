package correlate

import (
	"slices"
	"testing"
)

// The hand-written finders agree with the regular expressions they replace.
func FuzzFinders(f *testing.F) {
	for _, s := range []string{
		"trailkeeper-run/" + Token("k"), "tktk" + Token("a")[2:] + "x", Token("a") + Token("b"),
		AzureCorrelationID("k"), "x" + AzureCorrelationID("a") + AzureCorrelationID("b"), "--------" + AzureCorrelationID("c"),
		"6F9619FF-8B86-5011-B42D-00C04FC964FF", "tk", "", "-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := findTokens(s), tokenRE.FindAllString(s, -1); !slices.Equal(got, want) {
			t.Errorf("findTokens(%q) = %q, want %q", s, got, want)
		}
		if got, want := findUUIDv5(s), uuidRE.FindAllString(s, -1); !slices.Equal(got, want) {
			t.Errorf("findUUIDv5(%q) = %q, want %q", s, got, want)
		}
	})
}
