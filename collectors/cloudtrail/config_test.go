package cloudtrail

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors"
	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		api  func(*APIConfig)
		s3   func(*S3Config)
		want []string // every one must be reported
	}{
		{name: "api defaults", api: func(*APIConfig) {}},
		{name: "s3 defaults with a bucket", s3: func(c *S3Config) { c.Bucket, c.Accounts = "b", []string{"111111111111"} }},
		{name: "api: everything wrong at once", api: func(c *APIConfig) {
			c.Accounts = []string{"12345", "111111111111"}
			c.RoleARN = "arn:aws:iam::111111111111:role/x"
			c.Regions = []string{"mars-1", AllEnabled}
			c.Backfill = 100 * 24 * time.Hour
			c.RequestsPerSecond = 5
			c.Overlap = time.Minute
			c.SessionName = "x"
		}, want: []string{"accounts[0]", "role_arn", "regions[0]", "all_enabled stands alone", "backfill", "requests_per_second", "overlap", "session_name"}},
		{name: "api: {account} without accounts", api: func(c *APIConfig) { c.RoleARN = "arn:aws:iam::{account}:role/r" }, want: []string{"accounts"}},
		{name: "api: role_arns and accounts", api: func(c *APIConfig) {
			c.RoleARNs = []string{"arn:aws:iam::111111111111:role/r"}
			c.Accounts = []string{"111111111111"}
		}, want: []string{"role_arns"}},
		{name: "s3: missing bucket, bad mode, role pattern", s3: func(c *S3Config) {
			c.Mode = "poll"
			c.RoleARN = "arn:aws:iam::{account}:role/r"
			c.OrgID = "org"
			c.Visibility = time.Second
		}, want: []string{"bucket", "mode", "role_arn", "org_id", "visibility"}},
		{name: "s3: sqs needs a queue, list needs accounts", s3: func(c *S3Config) { c.Bucket, c.Mode = "b", ModeSQS }, want: []string{"queue_url"}},
		{name: "s3: list needs accounts", s3: func(c *S3Config) { c.Bucket = "b" }, want: []string{"accounts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.api != nil {
				c := NewAPIConfig()
				tc.api(c)
				err = c.Validate()
			} else {
				c := NewS3Config()
				tc.s3(c)
				err = c.Validate()
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestFactoriesFromConfig goes the daemon's way: default credential chain
// (here the environment) and endpoint_url.
func TestFactoriesFromConfig(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	clk := newClock()
	srv, _ := fakeAWS(t, clk, awsfake.WithRegions("eu-west-1", "us-east-1"))
	api := NewAPIConfig()
	api.Name, api.EndpointURL = "api", srv.URL
	st, err := NewAPIFactory().Create(context.Background(), collectors.Settings{}, api)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Key != "api/000000000000/eu-west-1" {
		t.Errorf("api streams: %v", st)
	}
	s3c := NewS3Config()
	s3c.Name, s3c.EndpointURL, s3c.Bucket, s3c.Accounts, s3c.Regions = "bucket", srv.URL, "b", []string{"111111111111"}, []string{"us-east-1"}
	st, err = NewS3Factory().Create(context.Background(), collectors.Settings{}, s3c)
	if err != nil || len(st) != 1 || st[0].Key != "bucket/111111111111/us-east-1" {
		t.Errorf("s3 streams: %v, %v", st, err)
	}
	if _, err := st[0].Collector.Poll(context.Background(), nil); err == nil {
		t.Error("poll of a missing bucket succeeded")
	}
}
