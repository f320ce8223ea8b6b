package normalize

import (
	"errors"
	"strings"
	"testing"
)

// Records that are not events say why, whatever path they took.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		hint Format
		is   error
		want string
	}{
		{"hinted but broken", `{"eventName":"X"}`, FormatCloudTrail, nil, "cloudtrail: not a CloudTrail record"},
		{"hinted garbage", `not json`, FormatCloudTrail, nil, "cloudtrail:"},
		{"unknown shape", `{"hello":"world"}`, FormatUnknown, ErrUnknownFormat, ""},
		{"digest", `{"digestStartTime":"x","logFiles":[]}`, FormatUnknown, ErrDigest, ""},
		{"non-audit entry", `{"insertId":"a","logName":"projects/p/logs/x","timestamp":"2024-01-01T00:00:00Z","textPayload":"hi"}`, FormatUnknown, ErrNotAudit, ""},
		{"envelope of garbage", `{"detail-type":"x","detail":{"a":1}}`, FormatUnknown, ErrUnknownFormat, ""},
		{"bad base64", `{"message":{"data":"%%%","messageId":"1"},"subscription":"s"}`, FormatUnknown, nil, "not base64"},
		{"invalid UTF-8", "{\"eventName\":\"\xff\",\"eventTime\":\"2024-01-01T00:00:00Z\"}", FormatCloudTrail, nil, "UTF-8"},
		{"bad time", `{"eventName":"A","eventSource":"s","eventTime":"yesterday"}`, FormatUnknown, nil, "eventTime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Normalize([]byte(tc.raw), tc.hint)
			if err == nil || ev != nil {
				t.Fatalf("got an event: %s", ev.JSON)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
