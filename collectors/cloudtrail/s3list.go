package cloudtrail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/sink"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// S3Collector reads the files a trail delivers to S3 for one account ×
// region, by listing: log files, Insight files and digests, oldest first.
//
// Its cursor is a high-water mark (the delivery time in the newest key
// done) and the keys done within the look-back before it: a listing
// starts look-back before the mark, so a file that lands late, with an
// older name, is still read, and the set of keys kept never grows past
// what one look-back holds. A file larger than a page is read over several
// polls, its offset in the cursor.
type S3Collector struct {
	files    *trailFiles
	bucket   string
	prefix   string // up to and including AWSLogs/[o-org/]
	account  string
	region   string
	lookback time.Duration
	backfill time.Duration
	pageSize int
	now      func() time.Time
	log      *slog.Logger

	listed []trailKey // the last listing not yet consumed, oldest first
	file   struct {
		key  string
		recs []collectors.Record
	}
}

type s3Cursor struct {
	After time.Time `json:"after"`
	Done  []string  `json:"done,omitempty"`
	Key   string    `json:"key,omitempty"`
	Off   int       `json:"off,omitempty"`
}

// Poll implements collectors.Collector.
func (c *S3Collector) Poll(ctx context.Context, raw []byte) (collectors.Page, error) {
	var cur s3Cursor
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return collectors.Page{}, fmt.Errorf("decode cursor: %w", err)
		}
	} else {
		cur.After = c.now().Add(-c.backfill)
	}
	var k trailKey
	if cur.Key != "" {
		var ok bool
		if k, ok = parseTrailKey(cur.Key); !ok {
			return collectors.Page{}, fmt.Errorf("cursor names %q, not a trail file", cur.Key)
		}
	} else {
		todo, err := c.todo(ctx, &cur)
		if err != nil {
			return collectors.Page{}, err
		}
		if len(todo) == 0 {
			return collectors.Page{Next: raw}, nil
		}
		k = todo[0]
	}

	var page collectors.Page
	done := true
	switch k.Kind {
	case kindDigest:
		rec, err := c.files.digest(ctx, k, c.bucket)
		if err != nil {
			return collectors.Page{}, err
		}
		if rec != nil {
			page.Records = []collectors.Record{*rec}
		}
	default:
		recs := c.file.recs
		if c.file.key != k.Key {
			var err error
			if recs, err = c.files.logFile(ctx, k, c.bucket); err != nil {
				return collectors.Page{}, err
			}
			c.file.key, c.file.recs = k.Key, recs
		}
		from := min(cur.Off, len(recs))
		to := min(from+c.pageSize, len(recs))
		page.Records = recs[from:to]
		if to < len(recs) {
			cur.Key, cur.Off, done = k.Key, to, false
		}
	}
	if done {
		cur.Key, cur.Off = "", 0
		cur.markDone(k, c.lookback)
		c.file.key, c.file.recs = "", nil
	}
	page.More = !done || slices.ContainsFunc(c.listed, func(l trailKey) bool { return !cur.isDone(l, c.lookback) })
	page.Next, _ = json.Marshal(cur)
	return page, nil
}

func (cur *s3Cursor) isDone(k trailKey, lookback time.Duration) bool {
	return k.Time.Before(cur.After.Add(-lookback)) || slices.Contains(cur.Done, k.Key)
}

// markDone adds k and forgets the keys that fell out of the look-back.
func (cur *s3Cursor) markDone(k trailKey, lookback time.Duration) {
	cur.Done = append(cur.Done, k.Key)
	if k.Time.After(cur.After) {
		cur.After = k.Time
	}
	cur.Done = slices.DeleteFunc(cur.Done, func(key string) bool {
		t, ok := parseTrailKey(key)
		return !ok || t.Time.Before(cur.After.Add(-lookback))
	})
	slices.Sort(cur.Done)
}

// todo returns the files not done yet, oldest first: from the last
// listing while it lasts, else from a new one.
func (c *S3Collector) todo(ctx context.Context, cur *s3Cursor) ([]trailKey, error) {
	c.listed = slices.DeleteFunc(c.listed, func(k trailKey) bool { return cur.isDone(k, c.lookback) })
	if len(c.listed) > 0 {
		return c.listed, nil
	}
	from := cur.After.Add(-c.lookback)
	var out []trailKey
	for _, kind := range []string{kindLog, kindInsight, kindDigest} {
		for day := from.UTC().Truncate(24 * time.Hour); !day.After(c.now()); day = day.Add(24 * time.Hour) {
			dayPrefix := c.prefix + c.account + "/" + kind + "/" + c.region + "/" + day.Format("2006/01/02") + "/"
			in := &s3.ListObjectsV2Input{Bucket: aws.String(c.bucket), Prefix: aws.String(dayPrefix)}
			if kind == kindLog && day.Equal(from.UTC().Truncate(24*time.Hour)) {
				// Log names sort by delivery time: skip what is before from.
				in.StartAfter = aws.String(dayPrefix + c.account + "_CloudTrail_" + c.region + "_" + from.UTC().Format("20060102T1504Z"))
			}
			p := s3.NewListObjectsV2Paginator(c.files.bucket.client, in)
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, fmt.Errorf("list s3://%s/%s: %w", c.bucket, dayPrefix, err)
				}
				for _, o := range page.Contents {
					k, ok := parseTrailKey(aws.ToString(o.Key))
					if ok && k.Account == c.account && k.Region == c.region && !cur.isDone(k, c.lookback) {
						out = append(out, k)
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b trailKey) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		// Logs before the digest delivered in the same minute.
		if c := strings.Compare(kindOrder(a.Kind), kindOrder(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	c.listed = out
	return out, nil
}

func kindOrder(kind string) string {
	if kind == kindDigest {
		return "2"
	}
	return "1"
}

// trailFiles turns trail files into records: log and Insight files into
// their records (remembering their hashes), digests into attestations.
type trailFiles struct {
	bucket *bucket
	// verifier returns the digest checker of a region (CloudTrail's keys
	// are per region); nil: digests are skipped.
	verifier func(region string) *verifier
	metrics  *metrics
	health   *collectors.Health
	logger   *slog.Logger
}

// log reads a log or Insight file.
func (f *trailFiles) logFile(ctx context.Context, k trailKey, bucketName string) ([]collectors.Record, error) {
	obj, err := f.bucket.fetch(ctx, bucketName, k.Key)
	switch {
	case errors.Is(err, errNoSuchKey):
		f.logger.Warn("trail file vanished before it was read", "key", k.Key)
		return nil, nil
	case err != nil && !errors.Is(err, errCorrupt):
		return nil, err
	}
	if err == nil {
		f.bucket.remember(k, obj.sum, 3*time.Hour) // digests come about an hour later
	}
	return records(bucketName, k.Key, obj, err), nil
}

// digest verifies a digest file and returns its attestation record.
func (f *trailFiles) digest(ctx context.Context, k trailKey, bucketName string) (*collectors.Record, error) {
	if f.verifier == nil {
		return nil, nil
	}
	obj, err := f.bucket.fetch(ctx, bucketName, k.Key)
	switch {
	case errors.Is(err, errNoSuchKey):
		return nil, nil // gone between listing and reading: its successor will say the chain broke
	case err != nil && !errors.Is(err, errCorrupt):
		return nil, err
	}
	a, err := f.verifier(k.Region).verify(ctx, k, bucketName, obj)
	if err != nil {
		return nil, err
	}
	f.metrics.digests.WithLabelValues(a.Result).Inc()
	stream := k.Account + "/" + k.Region
	if a.Result != "valid" {
		f.logger.Error("CloudTrail digest check failed", "digest", "s3://"+bucketName+"/"+k.Key, "problems", a.Problems)
		// Kept until restart: a later valid digest does not undo this one.
		f.health.Set("cloudtrail digest "+stream, fmt.Sprintf("s3://%s/%s: %s", bucketName, k.Key, strings.Join(a.Problems, "; ")))
	}
	data, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256([]byte(a.Digest.Bucket + "/" + a.Digest.Key + "\n" + a.Digest.SHA256 + "\n" + a.Result + "\n" + strings.Join(a.Problems, "\n")))
	return &collectors.Record{
		Origin:  "s3://" + bucketName + "/" + k.Key,
		Message: &sink.Message{Subject: jetstream.AttestSubject("aws", k.Account), ID: "attest:" + hex.EncodeToString(id[:16]), Data: data},
	}, nil
}
