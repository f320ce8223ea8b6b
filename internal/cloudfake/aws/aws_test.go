package aws_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ct "github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"go.uber.org/goleak"

	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sdkConfig(url string) aws.Config {
	return aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}
}

// TestLoadDirThroughTheSDK: a folder of trail data is served as a bucket
// and as LookupEvents events, moved to recent times, and an assumed role
// reads as its account.
func TestLoadDirThroughTheSDK(t *testing.T) {
	dir := t.TempDir()
	key := "AWSLogs/123456789012/CloudTrail/us-east-1/2024/11/05/123456789012_CloudTrail_us-east-1_20241105T0000Z_x.json"
	rec := `{"Records":[{"eventVersion":"1.08","eventID":"e1","eventTime":"2024-11-04T23:55:00Z","eventName":"CreateUser","eventSource":"iam.amazonaws.com","awsRegion":"us-east-1","recipientAccountId":"123456789012"}]}`
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, key)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, key), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := awsfake.New()
	defer srv.Close()
	n, err := srv.LoadDir("demo", dir, true)
	if err != nil || n != 1 {
		t.Fatalf("LoadDir: %d events, %v", n, err)
	}
	ctx := context.Background()
	cfg := sdkConfig(srv.URL)
	list, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("demo")})
	if err != nil || len(list.Contents) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	moved := aws.ToString(list.Contents[0].Key)
	if today := time.Now().UTC().Add(-10 * time.Minute).Format("2006/01/02"); !strings.Contains(moved, today) {
		t.Errorf("key %s not moved to %s", moved, today)
	}
	obj, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("demo"), Key: aws.String(moved)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if string(body) != rec {
		t.Errorf("body %q", body)
	}

	// LookupEvents answers for the account the credentials belong to.
	assumed, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::123456789012:role/r"), RoleSessionName: aws.String("s")})
	if err != nil {
		t.Fatal(err)
	}
	c := assumed.Credentials
	acfg := cfg.Copy()
	acfg.Credentials = credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	out, err := ct.NewFromConfig(acfg).LookupEvents(ctx, &ct.LookupEventsInput{StartTime: aws.Time(time.Now().Add(-time.Hour)), EndTime: aws.Time(time.Now())})
	if err != nil || len(out.Events) != 1 || aws.ToString(out.Events[0].EventId) != "e1" {
		t.Fatalf("LookupEvents as the role: %+v %v", out, err)
	}
	other, err := ct.NewFromConfig(cfg).LookupEvents(ctx, &ct.LookupEventsInput{})
	if err != nil || len(other.Events) != 0 {
		t.Errorf("another account sees %d events, %v", len(other.Events), err)
	}
}
