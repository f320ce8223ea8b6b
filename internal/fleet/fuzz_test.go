package fleet

import "testing"

// Lease keys shown in the status are the unit keys they were made from,
// whatever bytes those hold.
func FuzzLeaseKeyRoundTrip(f *testing.F) {
	for _, s := range []string{"aws/123456789012/us-east-1", "role/archiver", "gcp:projects/p.1", "ü space=%", ".a..b.", "=4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" {
			return
		}
		got := unescape(LeaseKey(key)[len(leasePrefix):])
		if got != key {
			t.Fatalf("unescape(LeaseKey(%q)) = %q", key, got)
		}
	})
}
