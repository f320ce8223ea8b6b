package cloudtrail

import (
	"context"
	"crypto"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ct "github.com/aws/aws-sdk-go-v2/service/cloudtrail"
)

// keysAPI is the part of the CloudTrail client digest checks use.
type keysAPI interface {
	ListPublicKeys(ctx context.Context, in *ct.ListPublicKeysInput, opts ...func(*ct.Options)) (*ct.ListPublicKeysOutput, error)
}

// digestFile is a CloudTrail digest, the fields the check reads.
type digestFile struct {
	AccountID             string  `json:"awsAccountId"`
	StartTime             string  `json:"digestStartTime"`
	EndTime               string  `json:"digestEndTime"`
	Bucket                string  `json:"digestS3Bucket"`
	Object                string  `json:"digestS3Object"`
	Fingerprint           string  `json:"digestPublicKeyFingerprint"`
	SignatureAlgorithm    string  `json:"digestSignatureAlgorithm"`
	PreviousBucket        *string `json:"previousDigestS3Bucket"`
	PreviousObject        *string `json:"previousDigestS3Object"`
	PreviousHashValue     *string `json:"previousDigestHashValue"`
	PreviousHashAlgorithm *string `json:"previousDigestHashAlgorithm"`
	PreviousSignature     *string `json:"previousDigestSignature"`
	LogFiles              []struct {
		Bucket    string `json:"s3Bucket"`
		Object    string `json:"s3Object"`
		HashValue string `json:"hashValue"`
	} `json:"logFiles"`
}

// Attestation is what trailkeeper publishes about one digest file.
type Attestation struct {
	Type       string         `json:"type"` // cloudtrail_digest
	Account    string         `json:"account"`
	Region     string         `json:"region"`
	Digest     AttestedFile   `json:"digest"`
	Result     string         `json:"result"` // valid | invalid
	Problems   []string       `json:"problems,omitempty"`
	ChainStart bool           `json:"chain_start,omitempty"`
	KeyFP      string         `json:"key_fingerprint,omitempty"`
	Signature  string         `json:"signature,omitempty"`
	StartTime  string         `json:"digest_start_time,omitempty"`
	EndTime    string         `json:"digest_end_time,omitempty"`
	Previous   *AttestedFile  `json:"previous_digest,omitempty"`
	LogFiles   []AttestedFile `json:"log_files"`
	VerifiedAt time.Time      `json:"verified_at"`
}

// AttestedFile is one file an attestation speaks of.
type AttestedFile struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	SHA256 string `json:"sha256,omitempty"`
	OK     *bool  `json:"ok,omitempty"`
}

// verifier checks digest files: signature, chain, log file hashes.
type verifier struct {
	keys   keysAPI
	bucket *bucket
	now    func() time.Time

	mu     sync.Mutex
	pubs   map[string]*rsa.PublicKey // MD5 fingerprint → key
	loaded time.Time
}

// verify checks the digest at bucketName/key, whose uncompressed bytes
// and metadata are obj. Problems with the digest are the attestation's
// verdict; an error means the check could not be made (S3 or CloudTrail
// failed) and is retried.
func (v *verifier) verify(ctx context.Context, k trailKey, bucketName string, obj object) (*Attestation, error) {
	a := &Attestation{Type: "cloudtrail_digest", Account: k.Account, Region: k.Region,
		Digest: AttestedFile{Bucket: bucketName, Key: k.Key, SHA256: obj.sum}, LogFiles: []AttestedFile{}}
	problem := func(format string, args ...any) { a.Problems = append(a.Problems, fmt.Sprintf(format, args...)) }
	defer func() {
		a.Result = "valid"
		if len(a.Problems) > 0 {
			a.Result = "invalid"
		}
		a.VerifiedAt = v.now().UTC()
	}()

	var d digestFile
	if err := json.Unmarshal(obj.content, &d); err != nil {
		problem("not a digest file: %v", err)
		return a, nil
	}
	a.KeyFP, a.StartTime, a.EndTime = d.Fingerprint, d.StartTime, d.EndTime
	a.Signature = obj.meta["signature"]
	if d.Bucket != bucketName || d.Object != k.Key {
		problem("digest moved: it names itself s3://%s/%s", d.Bucket, d.Object)
	}

	// The signature, over the four-line string CloudTrail signs. The
	// location is where we found the file, so a moved digest fails too.
	prevSig := "null"
	if d.PreviousSignature != nil {
		prevSig = *d.PreviousSignature
	} else {
		a.ChainStart = true
	}
	signed := d.EndTime + "\n" + bucketName + "/" + k.Key + "\n" + obj.sum + "\n" + prevSig
	pub, err := v.publicKey(ctx, d.Fingerprint)
	switch {
	case err != nil:
		return nil, err
	case pub == nil:
		problem("no CloudTrail public key with fingerprint %q", d.Fingerprint)
	case a.Signature == "":
		problem("no signature in the object metadata")
	default:
		sig, err := hex.DecodeString(a.Signature)
		h := sha256.Sum256([]byte(signed))
		if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) != nil {
			problem("signature does not verify")
		}
	}

	// The chain: the previous digest must exist, hash and sign as stated.
	if !a.ChainStart {
		pb, pk := aws.ToString(d.PreviousBucket), aws.ToString(d.PreviousObject)
		a.Previous = &AttestedFile{Bucket: pb, Key: pk}
		prev, err := v.bucket.fetch(ctx, pb, pk)
		switch {
		case errors.Is(err, errNoSuchKey):
			problem("chain broken: previous digest s3://%s/%s is missing", pb, pk)
		case err != nil && !errors.Is(err, errCorrupt):
			return nil, err
		default:
			a.Previous.SHA256 = prev.sum
			ok := prev.sum == aws.ToString(d.PreviousHashValue) && prev.meta["signature"] == prevSig
			a.Previous.OK = &ok
			if !ok {
				problem("chain broken: previous digest s3://%s/%s does not match its hash or signature", pb, pk)
			}
		}
	}

	// Every log file it lists, hashed uncompressed.
	for _, lf := range d.LogFiles {
		f := AttestedFile{Bucket: lf.Bucket, Key: lf.Object}
		sum, known := "", false
		if lf.Bucket == v.bucket.name {
			sum, known = v.bucket.hashOf(lf.Object)
		}
		if !known {
			obj, err := v.bucket.fetch(ctx, lf.Bucket, lf.Object)
			switch {
			case errors.Is(err, errNoSuchKey):
				problem("log file s3://%s/%s is missing", lf.Bucket, lf.Object)
			case err != nil && !errors.Is(err, errCorrupt):
				return nil, err
			default:
				sum = obj.sum
				if errors.Is(err, errCorrupt) {
					s := sha256.Sum256(obj.content) // what is there, for the record
					sum = hex.EncodeToString(s[:])
				}
			}
		}
		if sum != "" {
			f.SHA256 = sum
			ok := sum == lf.HashValue
			f.OK = &ok
			if !ok {
				problem("log file s3://%s/%s was modified: SHA-256 %s, digest says %s", lf.Bucket, lf.Object, sum, lf.HashValue)
			}
		}
		a.LogFiles = append(a.LogFiles, f)
	}
	slices.Sort(a.Problems)
	return a, nil
}

// publicKey returns the key with the fingerprint, asking CloudTrail again
// when it is unknown (keys rotate), at most once a minute.
func (v *verifier) publicKey(ctx context.Context, fp string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.pubs[fp]; ok {
		return k, nil
	}
	if !v.loaded.IsZero() && v.now().Sub(v.loaded) < time.Minute {
		return nil, nil
	}
	p := ct.NewListPublicKeysPaginator(v.keys, &ct.ListPublicKeysInput{StartTime: aws.Time(v.now().Add(-90 * 24 * time.Hour)), EndTime: aws.Time(v.now())})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("cloudtrail:ListPublicKeys: %w", err)
		}
		for _, k := range out.PublicKeyList {
			sum := md5.Sum(k.Value)
			if pub := parseRSA(k.Value); pub != nil {
				v.pubs[hex.EncodeToString(sum[:])] = pub
			}
		}
	}
	v.loaded = v.now()
	return v.pubs[strings.ToLower(fp)], nil
}

// parseRSA reads a public key in PKCS#1 or PKIX DER, as ListPublicKeys may
// return either.
func parseRSA(der []byte) *rsa.PublicKey {
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		if rk, ok := k.(*rsa.PublicKey); ok {
			return rk
		}
	}
	return nil
}
