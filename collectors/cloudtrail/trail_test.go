package cloudtrail

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/collectors"
	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
)

// signingKey is generated once per test binary: RSA key generation is slow
// under -race. No digest with a real AWS signature is public, so tests
// sign their own, as CloudTrail does.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// trail writes what a CloudTrail trail delivers into the fake's bucket.
type trail struct {
	t       testing.TB
	srv     *awsfake.Server
	bucket  string
	prefix  string // up to and including AWSLogs/[o-org/]
	account string
	region  string
	seq     int
	fp      string // MD5 of the key's DER, as CloudTrail names it
	// the last digest, for the chain
	prevKey, prevSig, prevSum string
}

func newTrail(t testing.TB, srv *awsfake.Server, prefix string, pkix bool) *trail {
	der := x509.MarshalPKCS1PublicKey(&signingKey().PublicKey)
	if pkix {
		der, _ = x509.MarshalPKIXPublicKey(&signingKey().PublicKey)
	}
	srv.AddPublicKey(awsfake.PublicKey{DER: der, Start: time.Now().Add(-365 * 24 * time.Hour), End: time.Now().Add(365 * 24 * time.Hour)})
	return &trail{t: t, srv: srv, bucket: "trail-bucket", prefix: prefix + "AWSLogs/", account: "111111111111", region: "us-east-1", fp: md5hex(der)}
}

// log delivers a log file of evs at delivery time at (kind CloudTrail or
// CloudTrail-Insight) and returns its key.
func (tr *trail) log(kind string, at time.Time, evs []awsfake.Event) string {
	tr.seq++
	var recs []json.RawMessage
	for _, e := range evs {
		recs = append(recs, json.RawMessage(e.Raw))
	}
	body, _ := json.Marshal(map[string]any{"Records": recs})
	key := fmt.Sprintf("%s%s/%s/%s/%s/%s_%s_%s_%s_%04x.json.gz", tr.prefix, tr.account, kind, tr.region, at.UTC().Format("2006/01/02"),
		tr.account, kind, tr.region, at.UTC().Format("20060102T1504Z"), tr.seq)
	tr.srv.PutObject(tr.bucket, key, awsfake.Object{Body: awsfake.Gzip(body)})
	return key
}

// digest delivers a signed digest for the log files at delivery time at,
// chained to the previous one, and returns its key.
func (tr *trail) digest(at time.Time, logs ...string) string {
	key := fmt.Sprintf("%s%s/CloudTrail-Digest/%s/%s/%s_CloudTrail-Digest_%s_main_%s_%s.json.gz", tr.prefix, tr.account, tr.region,
		at.UTC().Format("2006/01/02"), tr.account, tr.region, tr.region, at.UTC().Format("20060102T150405Z"))
	return tr.digestAt(key, key, at, logs...)
}

// digestAt writes a digest that names itself named but is stored at key.
func (tr *trail) digestAt(key, named string, at time.Time, logs ...string) string {
	type logFile struct {
		S3Bucket      string `json:"s3Bucket"`
		S3Object      string `json:"s3Object"`
		HashValue     string `json:"hashValue"`
		HashAlgorithm string `json:"hashAlgorithm"`
	}
	d := map[string]any{
		"awsAccountId": tr.account, "digestStartTime": at.Add(-time.Hour).UTC().Format(time.RFC3339), "digestEndTime": at.UTC().Format(time.RFC3339),
		"digestS3Bucket": tr.bucket, "digestS3Object": named, "digestPublicKeyFingerprint": tr.fp,
		"digestSignatureAlgorithm": "SHA256withRSA", "logFiles": []logFile{},
		"previousDigestS3Bucket": nil, "previousDigestS3Object": nil, "previousDigestHashValue": nil,
		"previousDigestHashAlgorithm": nil, "previousDigestSignature": nil,
	}
	if tr.prevKey != "" {
		d["previousDigestS3Bucket"], d["previousDigestS3Object"] = tr.bucket, tr.prevKey
		d["previousDigestHashValue"], d["previousDigestHashAlgorithm"] = tr.prevSum, "SHA-256"
		d["previousDigestSignature"] = tr.prevSig
	}
	var lfs []logFile
	for _, k := range logs {
		sum := sha256.Sum256(gunzip(tr.t, tr.srv.Object(tr.bucket, k).Body))
		lfs = append(lfs, logFile{tr.bucket, k, hex.EncodeToString(sum[:]), "SHA-256"})
	}
	if lfs != nil {
		d["logFiles"] = lfs
	}
	body, _ := json.Marshal(d)
	sum := sha256.Sum256(body)
	prev := "null"
	if tr.prevSig != "" {
		prev = tr.prevSig
	}
	signed := at.UTC().Format(time.RFC3339) + "\n" + tr.bucket + "/" + named + "\n" + hex.EncodeToString(sum[:]) + "\n" + prev
	h := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, signingKey(), crypto.SHA256, h[:])
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.srv.PutObject(tr.bucket, key, awsfake.Object{Body: awsfake.Gzip(body), Metadata: map[string]string{"signature": hex.EncodeToString(sig), "signature-algorithm": "SHA256withRSA"}})
	tr.prevKey, tr.prevSig, tr.prevSum = key, hex.EncodeToString(sig), hex.EncodeToString(sum[:])
	return key
}

// s3Streams builds list-mode streams for the trail's account and region.
func s3Streams(t testing.TB, clk *clock, base aws.Config, mod func(*S3Config), health *collectors.Health) []collectors.Stream {
	t.Helper()
	cfg := NewS3Config()
	cfg.Name = "bucket"
	cfg.Bucket = "trail-bucket"
	cfg.Accounts = []string{"111111111111"}
	cfg.Regions = []string{"us-east-1"}
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := S3Streams(context.Background(), collectors.Settings{Now: clk.Now, Registerer: prometheus.NewRegistry(), Health: health}, cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestS3ListReadsLogsInsightsDigestsOrgLayout(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	tr := newTrail(t, srv, "trails/o-abcdefghij/", false)
	tr.prefix = "trails/AWSLogs/o-abcdefghij/"
	now := clk.Now()
	a := events(tr.account, tr.region, 3, now.Add(-50*time.Minute))
	b := events(tr.account, tr.region, 4, now.Add(-40*time.Minute))
	for i := range b {
		b[i].ID += "-b"
		b[i].Raw = strings.Replace(b[i].Raw, b[i].ID[:len(b[i].ID)-2], b[i].ID, 1)
	}
	ins := []awsfake.Event{awsfake.MakeEvent(tr.account, tr.region, "insight-1", "RunInstances", now.Add(-35*time.Minute))}
	k1 := tr.log(kindLog, now.Add(-45*time.Minute), a)
	k2 := tr.log(kindLog, now.Add(-35*time.Minute), b)
	tr.log(kindInsight, now.Add(-30*time.Minute), ins)
	tr.digest(now.Add(-20*time.Minute), k1, k2)
	// Another account's file in the same bucket is not this stream's.
	other := *tr
	other.account = "222222222222"
	other.log(kindLog, now.Add(-30*time.Minute), events("222222222222", tr.region, 2, now))

	st := s3Streams(t, clk, base, func(c *S3Config) { c.Prefix = "trails"; c.OrgID = "o-abcdefghij"; c.Backfill = 2 * time.Hour }, nil)
	d := drainAll(t, st[0].Collector, nil)
	assertIDs(t, d.ids, append(append(a, b...), ins...))
	if len(d.attests) != 1 || d.attests[0].Result != "valid" || !d.attests[0].ChainStart || len(d.attests[0].LogFiles) != 2 {
		t.Fatalf("attestations: %+v", d.attests)
	}
	if reads := countOp(srv, "S3.GetObject"); reads != 4 {
		t.Errorf("%d GetObject calls, want 4 (3 files, 1 digest): the digest's log files were read already", reads)
	}
}

func countOp(srv *awsfake.Server, op string) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Op == op {
			n++
		}
	}
	return n
}

func TestS3ListPicksUpLateKeyAndForgets(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	tr := newTrail(t, srv, "", false)
	now := clk.Now()
	first := events(tr.account, tr.region, 2, now.Add(-30*time.Minute))
	tr.log(kindLog, now.Add(-25*time.Minute), first)
	st := s3Streams(t, clk, base, func(c *S3Config) { c.VerifyDigests = false }, nil)
	ids, cur := drain(t, st[0].Collector, nil)
	assertIDs(t, ids, first)

	// A file delivered late, named 40 minutes back (inside the hour of
	// look-back), and one named 2 hours back (outside it).
	late := []awsfake.Event{awsfake.MakeEvent(tr.account, tr.region, "late", "PutObject", now.Add(-45*time.Minute))}
	tooLate := []awsfake.Event{awsfake.MakeEvent(tr.account, tr.region, "too-late", "PutObject", now.Add(-125*time.Minute))}
	tr.log(kindLog, now.Add(-40*time.Minute), late)
	tr.log(kindLog, now.Add(-2*time.Hour), tooLate)
	clk.Add(time.Minute)
	ids, cur = drain(t, st[0].Collector, cur)
	assertIDs(t, ids, late)

	// The cursor keeps only keys inside the look-back.
	var c s3Cursor
	_ = json.Unmarshal(cur, &c)
	if len(c.Done) != 2 {
		t.Errorf("cursor keeps %d keys: %v", len(c.Done), c.Done)
	}
	for i := range 20 {
		tr.log(kindLog, now.Add(time.Duration(i)*10*time.Minute), events(tr.account, tr.region, 1, now))
	}
	clk.Add(4 * time.Hour)
	_, cur = drain(t, st[0].Collector, cur)
	_ = json.Unmarshal(cur, &c)
	if len(c.Done) > 7 {
		t.Errorf("cursor grows: %d keys after 20 files over 3h20m with a 1h look-back", len(c.Done))
	}
}

func TestS3LargeFilePagesAndCorruptFile(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, base := fakeAWS(t, clk)
	tr := newTrail(t, srv, "", false)
	now := clk.Now()
	big := events(tr.account, tr.region, 25, now.Add(-30*time.Minute))
	tr.log(kindLog, now.Add(-25*time.Minute), big)
	bad := fmt.Sprintf("AWSLogs/%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%s_bad.json.gz", tr.account, tr.region, now.Format("2006/01/02"), tr.account, tr.region, now.Add(-20*time.Minute).Format("20060102T1504Z"))
	srv.PutObject(tr.bucket, bad, awsfake.Object{Body: []byte{0x1f, 0x8b, 1, 2, 3}})
	// The first read of each object is cut short by the network.
	srv.AddFault(awsfake.Fault{Op: "S3.GetObject", Times: 1, Truncate: 100})

	st := s3Streams(t, clk, base, func(c *S3Config) { c.PageSize = 10; c.VerifyDigests = false }, nil)
	polls := 0
	var cur []byte
	var got []string
	var dead []collectors.Record
	for {
		page, err := st[0].Collector.Poll(context.Background(), cur)
		polls++
		if err != nil {
			continue
		}
		if len(page.Records) > 10 {
			t.Fatalf("page of %d records, page size 10", len(page.Records))
		}
		for _, r := range page.Records {
			if r.Err != nil {
				dead = append(dead, r)
				continue
			}
			got = append(got, eventID(t, r.Raw))
		}
		cur = page.Next
		if !page.More {
			break
		}
	}
	assertIDs(t, got, big)
	if len(dead) != 1 || string(dead[0].Raw) != "\x1f\x8b\x01\x02\x03" {
		t.Errorf("dead letters: %+v", dead)
	}
	if polls < 5 {
		t.Errorf("%d polls: truncation retry and paging should take at least 5", polls)
	}
}

func TestDigestVerdicts(t *testing.T) {
	t.Parallel()
	type step func(tr *trail, now time.Time) (wantProblem string)
	logs := func(tr *trail, now time.Time) []string {
		return []string{tr.log(kindLog, now.Add(-50*time.Minute), events(tr.account, tr.region, 2, now.Add(-55*time.Minute)))}
	}
	for _, tc := range []struct {
		name string
		pkix bool
		run  step
	}{
		{"valid chain", true, func(tr *trail, now time.Time) string {
			tr.digest(now.Add(-40*time.Minute), logs(tr, now)...)
			tr.digest(now.Add(-20 * time.Minute))
			return ""
		}},
		{"flipped byte in a log file", false, func(tr *trail, now time.Time) string {
			ks := logs(tr, now)
			tr.digest(now.Add(-40*time.Minute), ks...)
			o := tr.srv.Object(tr.bucket, ks[0])
			body := gunzip(tr.t, o.Body)
			body[20] ^= 1
			tr.srv.PutObject(tr.bucket, ks[0], awsfake.Object{Body: awsfake.Gzip(body), Modified: o.Modified})
			return "was modified"
		}},
		{"forged signature", false, func(tr *trail, now time.Time) string {
			k := tr.digest(now.Add(-40*time.Minute), logs(tr, now)...)
			o := tr.srv.Object(tr.bucket, k)
			sig := []byte(o.Metadata["signature"])
			sig[10] ^= 1
			tr.srv.PutObject(tr.bucket, k, awsfake.Object{Body: o.Body, Metadata: map[string]string{"signature": string(sig)}, Modified: o.Modified})
			return "signature does not verify"
		}},
		{"missing digest in the chain", false, func(tr *trail, now time.Time) string {
			first := tr.digest(now.Add(-40*time.Minute), logs(tr, now)...)
			tr.digest(now.Add(-20 * time.Minute))
			tr.srv.DeleteObject(tr.bucket, first)
			return "previous digest"
		}},
		{"digest moved to another key", false, func(tr *trail, now time.Time) string {
			named := fmt.Sprintf("AWSLogs/%s/CloudTrail-Digest/%s/%s/%s_CloudTrail-Digest_%s_main_%s_%s.json.gz", tr.account, tr.region,
				now.Format("2006/01/02"), tr.account, tr.region, tr.region, now.Add(-40*time.Minute).Format("20060102T150405Z"))
			moved := strings.Replace(named, "_main_", "_moved_", 1)
			tr.digestAt(moved, named, now.Add(-40*time.Minute), logs(tr, now)...)
			return "digest moved"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			srv, base := fakeAWS(t, clk)
			tr := newTrail(t, srv, "", tc.pkix)
			want := tc.run(tr, clk.Now())
			health := &collectors.Health{}
			st := s3Streams(t, clk, base, nil, health)
			d := drainAll(t, st[0].Collector, nil)
			if len(d.attests) == 0 {
				t.Fatal("no attestation")
			}
			var problems []string
			for i, a := range d.attests {
				problems = append(problems, a.Problems...)
				if i == 0 && !a.ChainStart && want == "" {
					t.Errorf("first digest not a chain start: %+v", a)
				}
				if a.Signature == "" || a.KeyFP != tr.fp {
					t.Errorf("attestation lacks signature or key: %+v", a)
				}
			}
			switch {
			case want == "" && len(problems) > 0:
				t.Errorf("valid trail: problems %v", problems)
			case want != "" && !strings.Contains(strings.Join(problems, "\n"), want):
				t.Errorf("problems %v, want one saying %q", problems, want)
			case want != "" && len(health.Problems()) == 0:
				t.Error("the failure is not in the health details")
			}
		})
	}
}

func md5hex(b []byte) string { return fmt.Sprintf("%x", md5sum(b)) }
