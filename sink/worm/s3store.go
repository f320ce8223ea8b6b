package worm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Store keeps the archive in an S3 bucket with Object Lock: every object
// is written once (If-None-Match: *), with a SHA-256 checksum (AWS refuses
// writes to a locked bucket without one; no local server enforces it),
// and with a retention mode and retain-until date of its own.
type S3Store struct {
	Client *s3.Client
	Bucket string
	Prefix string // ends with "/" or is empty
	// Mode is COMPLIANCE or GOVERNANCE; Retention how long each object is
	// locked from its write.
	Mode      types.ObjectLockRetentionMode
	Retention time.Duration
	Now       func() time.Time
}

// S3Settings build an S3Store from the AWS default credential chain.
type S3Settings struct {
	Bucket, Prefix, Region string
	EndpointURL            string // S3-compatible servers; path-style
	Mode                   string // COMPLIANCE or GOVERNANCE; "" for none
	Retention              time.Duration
}

// NewS3Store makes the client and the store.
func NewS3Store(ctx context.Context, s S3Settings) (S3Store, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return S3Store{}, fmt.Errorf("archive: AWS config: %w", err)
	}
	if s.Region != "" {
		cfg.Region = s.Region
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if s.EndpointURL != "" {
			o.BaseEndpoint, o.UsePathStyle = aws.String(s.EndpointURL), true
		}
	})
	prefix := strings.Trim(s.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return S3Store{Client: client, Bucket: s.Bucket, Prefix: prefix, Mode: types.ObjectLockRetentionMode(s.Mode), Retention: s.Retention}, nil
}

// CheckLock refuses a bucket without Object Lock, unless allowed.
func (s S3Store) CheckLock(ctx context.Context, allowUnlocked bool) error {
	out, err := s.Client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(s.Bucket)})
	enabled := err == nil && out.ObjectLockConfiguration != nil && out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled
	if !enabled && !allowUnlocked {
		return fmt.Errorf("archive bucket %s has no Object Lock (%v): objects could be deleted or replaced; set allow_unlocked to accept that", s.Bucket, err)
	}
	return nil
}

// Put implements Store.
func (s S3Store) Put(ctx context.Context, key string, data []byte) (string, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(s.Prefix + key), Body: bytes.NewReader(data),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256, IfNoneMatch: aws.String("*"),
	}
	if s.Mode != "" {
		in.ObjectLockMode = types.ObjectLockMode(s.Mode)
		in.ObjectLockRetainUntilDate = aws.Time(now().Add(s.Retention).UTC())
	}
	out, err := s.Client.PutObject(ctx, in)
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && (re.HTTPStatusCode() == http.StatusPreconditionFailed || re.HTTPStatusCode() == http.StatusConflict) {
		return "", fmt.Errorf("%s: %w", key, ErrExists)
	}
	if err != nil {
		return "", fmt.Errorf("put s3://%s/%s%s: %w", s.Bucket, s.Prefix, key, err)
	}
	return aws.ToString(out.VersionId), nil
}

// Get implements Store.
func (s S3Store) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.Prefix + key)})
	var nsk *types.NoSuchKey
	var ae smithy.APIError
	if errors.As(err, &nsk) || (errors.As(err, &ae) && ae.ErrorCode() == "NotFound") {
		return nil, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// List implements Store.
func (s S3Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(s.Prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key)[len(s.Prefix):])
		}
	}
	return keys, nil
}

// ObjectInfo is what verify checks of an object's lock.
type ObjectInfo struct {
	Version     string
	Mode        string
	RetainUntil time.Time
}

// Inspector is implemented by stores whose objects have versions and
// locks (S3): verify checks every object's lock and that the version a
// manifest recorded is the one served.
type Inspector interface {
	Inspect(ctx context.Context, key string) (ObjectInfo, error)
}

// Inspect implements Inspector.
func (s S3Store) Inspect(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.Prefix + key)})
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Version: aws.ToString(out.VersionId), Mode: string(out.ObjectLockMode), RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate)}, nil
}
