package cloudtrail

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// s3API is the part of the S3 client the trail readers use.
type s3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Kinds of trail files, as their folder names them.
const (
	kindLog     = "CloudTrail"
	kindInsight = "CloudTrail-Insight"
	kindDigest  = "CloudTrail-Digest"
)

// trailKeyRE reads a trail file key: AWSLogs/[o-org/]<account>/<kind>/<region>/YYYY/MM/DD/<name>
// where the name holds the delivery time (…_20261123T1205Z_… for logs,
// …_20261123T120501Z.json.gz for digests).
var trailKeyRE = regexp.MustCompile(`AWSLogs/(?:o-[a-z0-9]+/)?(\d{12})/(CloudTrail|CloudTrail-Insight|CloudTrail-Digest)/([a-z0-9-]+)/\d{4}/\d{2}/\d{2}/[^/]*?_(\d{8}T\d{4}(?:\d{2})?Z)[^/]*$`)

// trailKey is what a key says about its file.
type trailKey struct {
	Key, Kind, Account, Region string
	Time                       time.Time
}

func parseTrailKey(key string) (trailKey, bool) {
	m := trailKeyRE.FindStringSubmatch(key)
	if m == nil {
		return trailKey{}, false
	}
	layout := "20060102T1504Z"
	if len(m[4]) == len("20060102T150405Z") {
		layout = "20060102T150405Z"
	}
	t, err := time.Parse(layout, m[4])
	if err != nil {
		return trailKey{}, false
	}
	return trailKey{Key: key, Kind: m[2], Account: m[1], Region: m[3], Time: t}, true
}

// errCorrupt marks a file that was read whole but is not a trail file:
// its bytes go to the dead-letter subject, reading it again cannot help.
var errCorrupt = errors.New("corrupt trail file")

// bucket reads trail files and remembers the SHA-256 of the log files it
// read, so that verifying their digest does not fetch them again.
type bucket struct {
	client s3API
	name   string

	mu     sync.Mutex
	hashes map[string]fileHash // key → hash of the uncompressed file
}

type fileHash struct {
	sum  string
	when time.Time // the key's delivery time, for forgetting
}

func newBucket(client s3API, name string) *bucket {
	return &bucket{client: client, name: name, hashes: map[string]fileHash{}}
}

// object is a fetched file: its uncompressed bytes and its metadata.
type object struct {
	content []byte
	meta    map[string]string
	sum     string // hex SHA-256 of content
}

// fetch reads an object whole and uncompresses it. A transport error is
// returned as is (retry); NoSuchKey as errNoSuchKey; a body that does not
// uncompress as errCorrupt (with the raw bytes).
func (b *bucket) fetch(ctx context.Context, bucketName, key string) (object, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key)})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return object{}, fmt.Errorf("s3://%s/%s: %w", bucketName, key, errNoSuchKey)
	}
	if err != nil {
		return object{}, fmt.Errorf("get s3://%s/%s: %w", bucketName, key, err)
	}
	defer out.Body.Close()
	raw, err := io.ReadAll(out.Body)
	if err != nil {
		return object{}, fmt.Errorf("read s3://%s/%s: %w", bucketName, key, err)
	}
	content := raw
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			content, err = io.ReadAll(zr)
		}
		if err != nil {
			return object{content: raw}, fmt.Errorf("s3://%s/%s: %w: %v", bucketName, key, errCorrupt, err)
		}
	}
	sum := sha256.Sum256(content)
	return object{content: content, meta: out.Metadata, sum: hex.EncodeToString(sum[:])}, nil
}

var errNoSuchKey = errors.New("no such key")

// remember keeps a log file's hash for its digest, which comes about an
// hour later; hashes older than keep are forgotten.
func (b *bucket) remember(k trailKey, sum string, keep time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hashes[k.Key] = fileHash{sum: sum, when: k.Time}
	for key, h := range b.hashes {
		if k.Time.Sub(h.when) > keep {
			delete(b.hashes, key)
		}
	}
}

func (b *bucket) hashOf(key string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.hashes[key]
	return h.sum, ok
}

// records splits a log file into records; a file that is not a trail file
// becomes dead-letter records holding its bytes.
func records(bucketName, key string, obj object, readErr error) []collectors.Record {
	origin := "s3://" + bucketName + "/" + key
	if readErr == nil {
		raws, err := normalize.Split(obj.content)
		if err == nil {
			out := make([]collectors.Record, len(raws))
			for i, r := range raws {
				f := r.Format
				if f == normalize.FormatUnknown {
					f = normalize.FormatCloudTrail
				}
				out[i] = collectors.Record{Raw: r.Bytes, Format: f, Origin: fmt.Sprintf("%s#%d", origin, i)}
			}
			return out
		}
		readErr = fmt.Errorf("%w: %v", errCorrupt, err)
	}
	// Kept whole, in chunks a message can carry.
	const chunk = 256 << 10
	var out []collectors.Record
	for off := 0; off < len(obj.content) || off == 0; off += chunk {
		end := min(off+chunk, len(obj.content))
		out = append(out, collectors.Record{Raw: obj.content[off:end], Err: readErr, Origin: fmt.Sprintf("%s@%d", origin, off)})
		if end == len(obj.content) {
			break
		}
	}
	return out
}
