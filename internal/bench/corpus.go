// Package bench measures trailkeeper end to end and stage by stage against
// baselines measured in the same run (`trailkeeper bench`): a corpus made
// from the real records in examples/, the real pipeline on an embedded
// JetStream, the archiver and the index.
package bench

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/normalize"
)

// Start is the time of the corpus's first record; record i is i×Step later.
var Start = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// Step between records.
const Step = 250 * time.Millisecond

// perFile is how many records a corpus file holds (a trail's files hold a
// few hundred to a few thousand).
const perFile = 1000

// Templates are the real records of examples/, by cloud, in the shape a
// cloud delivers them to files: CloudTrail records (trail files), GCP
// LogEntry objects (sink exports), Azure Activity Log export records.
type Templates map[string][]map[string]any

// LoadTemplates reads every record under dir that normalizes, keeping the
// plain ones of each cloud.
func LoadTemplates(ctx context.Context, dir string) (Templates, error) {
	cfg := files.NewConfig()
	cfg.Path, cfg.PageSize, cfg.Settle = config.FilePath(dir), 10000, 0
	c := files.New(cfg, collectors.Settings{})
	out := Templates{}
	var cur []byte
	for {
		page, err := c.Poll(ctx, cur)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Records {
			if r.Err != nil || r.Message != nil {
				continue
			}
			ev, err := normalize.Normalize(r.Raw, r.Format)
			if err != nil {
				continue
			}
			var m map[string]any
			if json.Unmarshal(r.Raw, &m) != nil {
				continue
			}
			switch {
			case ev.Cloud == "aws" && m["eventVersion"] != nil && m["eventID"] != nil:
			case ev.Cloud == "gcp" && m["protoPayload"] != nil && m["insertId"] != nil:
			case ev.Cloud == "azure" && isString(m["operationName"]) && m["time"] != nil:
			default:
				continue
			}
			out[ev.Cloud] = append(out[ev.Cloud], m)
		}
		cur = page.Next
		if !page.More {
			break
		}
	}
	for _, cloud := range []string{"aws", "gcp", "azure"} {
		if len(out[cloud]) == 0 {
			return nil, fmt.Errorf("bench: no %s record under %s to make a corpus from", cloud, dir)
		}
	}
	return out, nil
}

func isString(v any) bool { _, ok := v.(string); return ok }

// Corpus is a generated corpus on disk.
type Corpus struct {
	Dir     string
	Records int
	ByCloud map[string]int
	Bytes   int64 // of the raw records, uncompressed
	Runs    []correlate.Run
}

// RunOf is the run that made record i, if any: every tenth record of each
// block of runBlock records is a pipeline's (a marker in its user agent for
// AWS, its identity elsewhere).
func runOf(i, n int) (key string, ok bool) {
	if i%10 != 0 {
		return "", false
	}
	return fmt.Sprintf("bench:run:%d", i/runBlock(n)), true
}

func runBlock(n int) int { return max(n/100, 100) }

// Write generates n records of the given clouds into dir, streaming: one
// file of perFile records at a time, whatever n.
func Write(dir string, n int, clouds []string, t Templates) (Corpus, error) {
	c := Corpus{Dir: dir, Records: n, ByCloud: map[string]int{}}
	if len(clouds) == 0 {
		return c, fmt.Errorf("bench: no cloud")
	}
	for start := 0; start < n; start += perFile * len(clouds) {
		for ci, cloud := range clouds {
			var recs [][]byte
			for i := start + ci; i < min(n, start+perFile*len(clouds)); i += len(clouds) {
				rec, err := json.Marshal(vary(cloud, t[cloud][(i/len(clouds))%len(t[cloud])], i, n))
				if err != nil {
					return c, err
				}
				recs = append(recs, rec)
				c.Bytes += int64(len(rec))
			}
			if len(recs) == 0 {
				continue
			}
			c.ByCloud[cloud] += len(recs)
			if err := writeFile(dir, cloud, start/(perFile*len(clouds)), recs); err != nil {
				return c, err
			}
		}
	}
	for k := 0; k*runBlock(n) < n; k++ {
		from, to := at(k*runBlock(n)), at(min((k+1)*runBlock(n), n)-1)
		c.Runs = append(c.Runs, correlate.Run{Key: fmt.Sprintf("bench:run:%d", k), Tool: "terraform", Orchestrator: "github",
			StartedAt: from.Add(-time.Minute), FinishedAt: ptr(to.Add(time.Minute)), Status: "succeeded", Commit: fmt.Sprintf("%040x", k),
			Scope:      correlate.Scope{Repo: "bench/infra", Workspace: "prod"},
			Identities: []string{"terraform-deploy@bench-proj.iam.gserviceaccount.com", "app-terraform-deploy"}})
	}
	return c, nil
}

func ptr[T any](v T) *T { return &v }

func at(i int) time.Time { return Start.Add(time.Duration(i) * Step) }

// writeFile writes one file as the cloud delivers it: a gzipped trail
// file, a JSON Lines sink export, an Activity Log export document.
func writeFile(dir, cloud string, k int, recs [][]byte) error {
	var path string
	switch cloud {
	case "aws":
		path = filepath.Join(dir, "AWSLogs", "100000000000", "CloudTrail", "us-east-1", "2026", "10", "01",
			fmt.Sprintf("100000000000_CloudTrail_us-east-1_20261001T0000Z_%08d.json.gz", k))
	case "gcp":
		path = filepath.Join(dir, "gcp", fmt.Sprintf("cloudaudit_%08d.jsonl", k))
	default:
		path = filepath.Join(dir, "azure", fmt.Sprintf("activity_%08d.json", k))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var w *bufio.Writer
	var gz *gzip.Writer
	if cloud == "aws" {
		gz = gzip.NewWriter(f)
		w = bufio.NewWriterSize(gz, 1<<16)
	} else {
		w = bufio.NewWriterSize(f, 1<<16)
	}
	switch cloud {
	case "gcp":
		for _, r := range recs {
			w.Write(r)
			w.WriteByte('\n')
		}
	default:
		key := "Records"
		if cloud == "azure" {
			key = "records"
		}
		w.WriteString(`{"` + key + `":[`)
		for i, r := range recs {
			if i > 0 {
				w.WriteByte(',')
			}
			w.Write(r)
		}
		w.WriteString("]}\n")
	}
	err = w.Flush()
	if gz != nil && err == nil {
		err = gz.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// Older than any settle time: the files are complete.
	old := time.Now().Add(-time.Hour)
	if err == nil {
		err = os.Chtimes(path, old, old)
	}
	return err
}

// vary makes record i of n from a template: new ids and time, and one of
// 40 accounts, 2 000 people, 20 service roles, a pipeline's role for the
// run's records, and resources named for i.
func vary(cloud string, tmpl map[string]any, i, n int) map[string]any {
	m := deepCopy(tmpl).(map[string]any)
	t := at(i)
	acct := fmt.Sprintf("1000000000%02d", (i/3)%40)
	id := fmt.Sprintf("%08x-%04x-4%03x-8000-%012x", i, (i>>16)&0xffff, i%0xfff, i)
	runKey, byRun := runOf(i, n)
	user := fmt.Sprintf("user%04d", i%2000)
	role := fmt.Sprintf("svc-%02d", i%20)
	res := fmt.Sprintf("-%06d", (i*7919)%max(n/5, 10))
	switch cloud {
	case "aws":
		m["eventID"], m["eventTime"], m["recipientAccountId"] = id, t.Format(time.RFC3339), acct
		m["requestID"] = id
		ui, _ := m["userIdentity"].(map[string]any)
		if ui == nil {
			ui = map[string]any{}
			m["userIdentity"] = ui
		}
		ui["accountId"] = acct
		switch {
		case byRun:
			ui["type"], ui["arn"] = "AssumedRole", "arn:aws:sts::"+acct+":assumed-role/terraform-deploy/"+correlate.Token(runKey)
			m["userAgent"] = "APN/1.0 HashiCorp/1.0 Terraform/1.9.0 trailkeeper-run/" + correlate.Token(runKey)
		case i%4 == 1:
			ui["type"], ui["arn"] = "AssumedRole", "arn:aws:sts::"+acct+":assumed-role/"+role+"/session"
		default:
			ui["type"], ui["arn"], ui["userName"] = "IAMUser", "arn:aws:iam::"+acct+":user/"+user, user
		}
		suffixStrings(m["requestParameters"], res, "bucketName", "instanceId", "roleName", "userName", "functionName", "groupName", "keyName", "name")
		if rs, ok := m["resources"].([]any); ok {
			for _, r := range rs {
				suffixStrings(r, res, "ARN", "arn")
			}
		}
	case "gcp":
		m["insertId"], m["timestamp"], m["receiveTimestamp"] = id, t.Format(time.RFC3339Nano), t.Add(time.Second).Format(time.RFC3339Nano)
		proj := fmt.Sprintf("bench-proj-%02d", (i/3)%40)
		if ln, ok := m["logName"].(string); ok {
			if _, rest, ok := strings.Cut(strings.TrimPrefix(ln, "projects/"), "/"); ok {
				m["logName"] = "projects/" + proj + "/" + rest
			}
		}
		if r, ok := m["resource"].(map[string]any); ok {
			if l, ok := r["labels"].(map[string]any); ok {
				l["project_id"] = proj
			}
		}
		if pp, ok := m["protoPayload"].(map[string]any); ok {
			ai, _ := pp["authenticationInfo"].(map[string]any)
			if ai == nil {
				ai = map[string]any{}
				pp["authenticationInfo"] = ai
			}
			switch {
			case byRun:
				ai["principalEmail"] = "terraform-deploy@bench-proj.iam.gserviceaccount.com"
				if rm, ok := pp["requestMetadata"].(map[string]any); ok {
					rm["callerSuppliedUserAgent"] = "Terraform/1.9.0 trailkeeper-run/" + correlate.Token(runKey)
				}
			case i%4 == 1:
				ai["principalEmail"] = role + "@" + proj + ".iam.gserviceaccount.com"
			default:
				ai["principalEmail"] = user + "@example.com"
			}
			if rn, ok := pp["resourceName"].(string); ok {
				pp["resourceName"] = rn + res
			}
		}
	default:
		sub := fmt.Sprintf("00000000-0000-4000-8000-0000000000%02d", (i/3)%40)
		m["time"], m["correlationId"] = t.Format(time.RFC3339Nano), id
		if rid, ok := m["resourceId"].(string); ok {
			if parts := strings.SplitN(rid, "/", 4); len(parts) == 4 && strings.EqualFold(parts[1], "subscriptions") {
				rid = "/subscriptions/" + sub + "/" + parts[3]
			}
			m["resourceId"] = rid + res
		}
		caller := user + "@example.onmicrosoft.com"
		switch {
		case byRun:
			caller = "app-terraform-deploy"
		case i%4 == 1:
			caller = "app-" + role
		}
		if id, ok := m["identity"].(map[string]any); ok {
			if cl, ok := id["claims"].(map[string]any); ok {
				for _, k := range []string{"name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "appid"} {
					if _, ok := cl[k]; ok {
						cl[k] = caller
					}
				}
			}
		}
		if _, ok := m["caller"]; ok {
			m["caller"] = caller
		}
	}
	return m
}

// suffixStrings appends suffix to the string values of the named keys of
// v (an object), where present.
func suffixStrings(v any, suffix string, keys ...string) {
	o, ok := v.(map[string]any)
	if !ok {
		return
	}
	for _, k := range keys {
		if s, ok := o[k].(string); ok && s != "" {
			o[k] = s + suffix
		}
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := slices.Clone(x)
		for i, e := range s {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}
