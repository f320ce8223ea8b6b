package ocsfschema

import (
	"os"
	"strings"
	"testing"
)

func load(t testing.TB) *Schema {
	t.Helper()
	s, err := Load("testdata/v1.8.0")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoad(t *testing.T) {
	s := load(t)
	for _, uid := range []int{6003, 3002, 3001, 2004} {
		if s.classes[uid] == nil {
			t.Errorf("class %d not compiled", uid)
		}
	}
	api := s.classes[6003]
	if !api.attrs["activity_id"].Enum["4"] || !api.attrs["activity_id"].Enum["99"] {
		t.Errorf("activity_id enum = %v; want the chain's values united", api.attrs["activity_id"].Enum)
	}
	if api.attrs["cloud"].Profile != "cloud" || api.attrs["cloud"].Requirement != "required" {
		t.Errorf("cloud attribute = %+v", api.attrs["cloud"])
	}
}

const valid = `{"activity_id":1,"category_uid":6,"class_uid":6003,"type_uid":600301,"severity_id":1,"time":1700000000000,
 "metadata":{"version":"1.8.0","product":{"name":"CloudTrail","vendor_name":"AWS"},"profiles":["cloud"]},
 "actor":{"user":{"uid":"arn:aws:iam::1:user/a"}},"api":{"operation":"CreateBucket"},
 "src_endpoint":{"ip":"10.0.0.1"},"cloud":{"provider":"AWS"},"unmapped":{"anything":{"goes":[1]}}}`

func TestValidate(t *testing.T) {
	s := load(t)
	if errs := s.Validate([]byte(valid)); len(errs) > 0 {
		t.Fatalf("valid event rejected: %v", errs)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"missing required", `"api":{"operation":"CreateBucket"},`, ``, "api: is required"},
		{"unknown attribute", `"severity_id":1,`, `"severity_id":1,"bogus":2,`, "bogus: not an attribute"},
		{"wrong type", `"time":1700000000000`, `"time":"yesterday"`, "time: must be an integer"},
		{"bad enum", `"severity_id":1`, `"severity_id":42`, "severity_id: 42 is not in the enum"},
		{"bad ip", `"10.0.0.1"`, `"225.01.00.16"`, "not a valid ip_t"},
		{"profile not listed", `"profiles":["cloud"]`, `"profiles":[]`, "cloud: comes from profile"},
		{"deprecated", `"cloud":{"provider":"AWS"}`, `"cloud":{"provider":"AWS","project_uid":"p"}`, "project_uid: is deprecated"},
		{"type_uid", `"type_uid":600301`, `"type_uid":600302`, "type_uid"},
		{"constraint", `"actor":{"user":{"uid":"arn:aws:iam::1:user/a"}}`, `"actor":{}`, "needs at least one of"},
		{"nested unknown", `"api":{"operation":"CreateBucket"}`, `"api":{"operation":"CreateBucket","verb":"x"}`, "api.verb: not an attribute"},
		{"null", `"severity_id":1,`, `"severity_id":1,"message":null,`, "message: is null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := strings.Replace(valid, tc.from, tc.to, 1)
			if ev == valid {
				t.Fatal("replacement did not apply")
			}
			errs := s.Validate([]byte(ev))
			for _, e := range errs {
				if strings.Contains(e.Error(), tc.want) {
					return
				}
			}
			t.Errorf("want an error containing %q, got %v", tc.want, errs)
		})
	}
}

// The licence of the copied schema stays with it.
func TestSchemaLicenceKept(t *testing.T) {
	if _, err := os.Stat("testdata/v1.8.0/LICENSE"); err != nil {
		t.Error(err)
	}
}
