package worm

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// versitygwVersion is the S3 gateway the Object Lock tests run: it
// enforces Object Lock as AWS does (CLOUD-NOTES), and stores objects as
// plain files, so tests can tamper underneath the S3 API too.
const versitygwVersion = "v1.8.0"

var buildVersitygw sync.Once

// versitygwBinary returns the pinned binary, building it once per machine
// into the user cache (about 90 s on 2 cores) when it is missing. .ci/run
// builds it the same way.
func versitygwBinary(t testing.TB) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "trailkeeper-test", "versitygw-"+versitygwVersion)
	bin := filepath.Join(dir, "versitygw")
	if _, err := os.Stat(bin); err != nil {
		buildVersitygw.Do(func() {
			cmd := exec.Command("go", "install", "github.com/versity/versitygw/cmd/versitygw@"+versitygwVersion)
			cmd.Env = append(os.Environ(), "GOBIN="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("build versitygw: %v\n%s", err, out)
			}
		})
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("versitygw %s is not built and could not be: %v", versitygwVersion, err)
		}
	}
	return bin
}

// versitygw runs the gateway on a posix folder with versioning, and
// returns a client and the folder objects live in (root/bucket/key).
func versitygw(t *testing.T) (*s3.Client, string) {
	bin := versitygwBinary(t)
	root, versions := t.TempDir(), t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--access", "AKID", "--secret", "secret", "--port", addr,
		"posix", "--versioning-dir", versions, "--sidecar", t.TempDir(), root)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// It dies with the test process, even one a timeout kills before its
	// cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("versitygw did not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s3Client(fmt.Sprintf("http://%s", addr)), root
}

// lockedBucket makes a bucket with Object Lock (and so versioning).
func lockedBucket(t *testing.T, c *s3.Client, name string) {
	_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
}

func TestS3ObjectLockBackend(t *testing.T) {
	c, root := versitygw(t)
	lockedBucket(t, c, "archive")
	st := S3Store{Client: c, Bucket: "archive", Prefix: "tk/", Mode: types.ObjectLockRetentionModeCompliance, Retention: time.Hour}
	ctx := context.Background()
	if err := st.CheckLock(ctx, false); err != nil {
		t.Fatalf("locked bucket refused: %v", err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("plain")}); err != nil {
		t.Fatal(err)
	}
	if err := (S3Store{Client: c, Bucket: "plain"}).CheckLock(ctx, false); err == nil {
		t.Error("a bucket without Object Lock was accepted")
	}
	v, err := st.Put(ctx, "manifest/x.json", []byte("one"))
	if err != nil || v == "" {
		t.Fatalf("put: %q %v", v, err)
	}
	if _, err := st.Put(ctx, "manifest/x.json", []byte("two")); err == nil {
		t.Error("an object was written twice")
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("archive"), Key: aws.String("tk/manifest/x.json"), VersionId: aws.String(v)}); err == nil {
		t.Error("a COMPLIANCE-locked version was deleted")
	}
	info, err := st.Inspect(ctx, "manifest/x.json")
	if err != nil || info.Mode != "COMPLIANCE" || info.RetainUntil.Before(time.Now()) {
		t.Errorf("retention %+v %v", info, err)
	}
	if _, err := os.Stat(filepath.Join(root, "archive", "tk", "manifest", "x.json")); err != nil {
		t.Errorf("object not stored as a file: %v", err)
	}
}

// TestTamperMatrixS3: the same forgeries on an Object Lock bucket, done on
// the files versitygw keeps underneath, plus what only S3 allows: a new
// version over an object (COMPLIANCE keeps the old one, but it is no longer
// the one served) and a delete marker.
func TestTamperMatrixS3(t *testing.T) {
	c, root := versitygw(t)
	ctx := context.Background()
	cases := tamperCases(t, nil)
	overwrite := func(bucket string) func(tp tamperer) {
		return func(tp tamperer) {
			seg := tp.manifest(tp.keys("manifest/")[1]).Segment
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("tk/" + seg), Body: strings.NewReader("forged")})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, tc := range append(cases, tamperCase{name: "overwrite an object through the S3 API", want: "version-replaced"},
		tamperCase{name: "delete an object through the S3 API", want: "segment-missing"}) {
		bucket := fmt.Sprintf("archive-%02d", i)
		t.Run(tc.name, func(t *testing.T) {
			lockedBucket(t, c, bucket)
			st := S3Store{Client: c, Bucket: bucket, Prefix: "tk/", Mode: types.ObjectLockRetentionModeCompliance, Retention: time.Hour}
			ver := archiveInto(t, 60, st)
			tc := tc
			switch tc.want {
			case "version-replaced":
				tc.tamper = overwrite(bucket)
			case "segment-missing":
				if tc.tamper == nil {
					tc.tamper = func(tp tamperer) {
						seg := tp.manifest(tp.keys("manifest/")[1]).Segment
						if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("tk/" + seg)}); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if tc.want == "checkpoint-signature" {
				tc = tamperCases(t, ver)[len(cases)-1]
			}
			anchor := newestCheckpoint(t, st)
			tc.tamper(tamperer{t, filepath.Join(root, bucket, "tk")})
			checkTamper(t, st, ver, anchor, tc)
		})
	}
}
