package cloudtrail

import (
	"strings"
	"testing"
)

func FuzzParseTrailKey(f *testing.F) {
	for _, k := range []string{
		"AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/23/111111111111_CloudTrail_us-east-1_20261123T1205Z_abcd.json.gz",
		"p/AWSLogs/o-abcdefghij/111111111111/CloudTrail-Digest/eu-west-1/2026/11/23/111111111111_CloudTrail-Digest_eu-west-1_main_eu-west-1_20261123T120501Z.json.gz",
		"AWSLogs/111111111111/CloudTrail-Insight/us-east-1/2026/11/23/x_20261399T9999Z_y",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k, ok := parseTrailKey(key)
		if !ok {
			return
		}
		if k.Key != key || len(k.Account) != 12 || !strings.Contains(key, "/"+k.Kind+"/"+k.Region+"/") || k.Time.IsZero() {
			t.Fatalf("parseTrailKey(%q) = %+v", key, k)
		}
	})
}

func FuzzNotifiedObjects(f *testing.F) {
	for _, s := range []string{
		s3Event("b", "AWSLogs/1/CloudTrail/x y"),
		`{"Type":"Notification","Message":"{\"s3Bucket\":\"b\",\"s3ObjectKey\":[\"k\"]}"}`,
		`{"source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`,
		`{"Event":"s3:TestEvent"}`, `{"Records":[{"eventSource":"aws:sqs"}]}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		objs, err := notifiedObjects(body)
		if err != nil && objs != nil {
			t.Fatalf("objects and an error: %v %v", objs, err)
		}
	})
}
