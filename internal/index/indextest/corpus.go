// Package indextest makes a corpus of changes shaped like a real estate's
// (three clouds, many accounts, a few busy roles and many people, resources
// touched a few times each, runs that made a tenth of the changes, drift
// on some): for the index's tests and benchmarks, and the API's.
package indextest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
	"github.com/trailkeeper/trailkeeper/sink"
	"github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// Start is the time of the corpus's first change; change i is i seconds
// later.
var Start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// Change i's facts, so that tests can predict query answers.
type Change struct {
	I        int
	UID      string
	Time     time.Time
	Cloud    string
	Account  string
	Actor    string // principal as the index normalizes it
	Session  string
	Action   string
	Mutating bool
	Failed   bool
	Resource string // uid
	Name     string
	RunKey   string // "" when no run made it
	Band     string
	Drift    string // the drift finding's uid, or ""
}

var (
	clouds   = []string{"aws", "gcp", "azure"}
	awsOps   = []string{"RunInstances", "DescribeInstances", "PutBucketPolicy", "GetObject", "AuthorizeSecurityGroupIngress", "ListBuckets", "UpdateFunctionConfiguration", "DeleteBucket"}
	gcpOps   = []string{"v1.compute.instances.insert", "storage.objects.get", "SetIamPolicy", "v1.compute.firewalls.patch", "storage.buckets.list"}
	azureOps = []string{"Microsoft.Compute/virtualMachines/write", "Microsoft.Storage/storageAccounts/read", "Microsoft.Network/networkSecurityGroups/write", "Microsoft.KeyVault/vaults/delete"}
)

// Resources is how many distinct resources a corpus of n changes touches.
func Resources(n int) int { return max(n/5, 10) }

// At returns change i of a corpus of n.
func At(i, n int) Change {
	c := Change{I: i, UID: fmt.Sprintf("synthetic:%08d", i), Time: Start.Add(time.Duration(i) * time.Second)}
	c.Cloud = clouds[i%3]
	acct := (i / 3) % 40
	r := (i * 7919) % Resources(n) // scattered, each about 5 times
	c.Name = fmt.Sprintf("web-%05d", r)
	switch c.Cloud {
	case "aws":
		c.Account = fmt.Sprintf("1000000000%02d", acct)
		c.Action = awsOps[i%len(awsOps)]
		c.Resource = fmt.Sprintf("arn:aws:ec2:us-east-1:%s:instance/i-%012x", c.Account, r)
	case "gcp":
		c.Account = fmt.Sprintf("proj-%02d", acct)
		c.Action = gcpOps[i%len(gcpOps)]
		c.Resource = fmt.Sprintf("projects/%s/zones/europe-west1-b/instances/%s", c.Account, c.Name)
	default:
		c.Account = fmt.Sprintf("00000000-0000-0000-0000-0000000000%02d", acct)
		c.Action = azureOps[i%len(azureOps)]
		c.Resource = fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-%d/providers/Microsoft.Compute/virtualMachines/%s", c.Account, acct%4, c.Name)
	}
	c.Mutating = !contains(c.Action, "Describe", "Get", "get", "List", "list", "read")
	c.Failed = i%20 == 7
	// Every tenth change is a pipeline's (a run of 100 changes), the rest
	// are 2 000 people's and 20 service roles'.
	if i%10 == 0 {
		c.RunKey = fmt.Sprintf("gh:org/infra:%d", i/1000)
		c.Band = []string{"attested", "attested", "inferred", "ambiguous"}[(i/10)%4]
		c.Actor, c.Session = principal(c, "terraform-deploy", true), "tk-run"
	} else if i%4 == 1 {
		c.Actor, c.Session = principal(c, fmt.Sprintf("svc-%02d", i%20), true), "auto"
	} else {
		c.Actor, c.Session = principal(c, fmt.Sprintf("user%04d", i%2000), false), ""
	}
	if c.Mutating && !c.Failed && (i%100 == 3 || i%1000 == 500) {
		c.Drift = "drift:" + c.UID
	}
	return c
}

func principal(c Change, name string, role bool) string {
	switch {
	case c.Cloud == "aws" && role:
		return "arn:aws:iam::" + c.Account + ":role/" + name
	case c.Cloud == "aws":
		return "arn:aws:iam::" + c.Account + ":user/" + name
	case c.Cloud == "gcp" && role:
		return name + "@" + c.Account + ".iam.gserviceaccount.com"
	case c.Cloud == "gcp":
		return name + "@example.com"
	case role:
		return "app-" + name
	}
	return name + "@example.onmicrosoft.com"
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
	}
	return false
}

// Event is change c as the pipeline publishes it.
func (c Change) Event() *ocsf.Event {
	e := &ocsf.Event{Time: c.Time.UnixMilli(), SeverityID: ocsf.SeverityInformational, Severity: "Informational"}
	act, name := ocsf.ActivityUpdate, "Update"
	if !c.Mutating {
		act, name = ocsf.ActivityRead, "Read"
	}
	e.SetClass(ocsf.ClassAPIActivity, act, name)
	e.StatusID, e.Status = 1, "Success"
	if c.Failed {
		e.StatusID, e.Status = 2, "Failure"
	}
	provider := map[string]string{"aws": "AWS", "gcp": "GCP", "azure": "Azure"}[c.Cloud]
	e.Cloud = &ocsf.Cloud{Provider: provider, Region: "us-east-1", Account: &ocsf.Account{UID: c.Account}}
	u := &ocsf.User{UID: c.Actor, Name: c.Session, Type: "IAMUser"}
	if c.Cloud == "aws" && c.Session != "" {
		u = &ocsf.User{UID: "arn:aws:sts::" + c.Account + ":assumed-role/" + c.Actor[len("arn:aws:iam::"+c.Account+":role/"):] + "/" + c.Session, Name: c.Session, Type: "AssumedRole"}
	}
	e.Actor = &ocsf.Actor{User: u}
	e.API = &ocsf.API{Operation: c.Action, Service: &ocsf.Service{Name: c.Cloud + ".example"}}
	e.Resources = []ocsf.ResourceDetails{{UID: c.Resource, Name: c.Name, Type: "instance"}}
	e.Metadata = ocsf.Metadata{UID: c.UID, Version: ocsf.Version, Product: ocsf.Product{Name: "synthetic", VendorName: "trailkeeper"}}
	e.RawData = `{"synthetic":` + fmt.Sprint(c.I) + `}`
	if c.RunKey != "" {
		data, _ := json.Marshal(map[string]any{"run_key": c.RunKey, "confidence": 0.97, "band": c.Band, "tool": "terraform"})
		e.Enrichments = []ocsf.Enrichment{{Name: "iac.run", Value: c.RunKey, Data: data, Type: "iac_run", Provider: "trailkeeper"}}
		e.Metadata.CorrelationUID = c.RunKey
	}
	return e
}

// Finding is the drift finding about c (call only when c.Drift != "").
func (c Change) Finding() *ocsf.Event {
	f := &ocsf.Event{Time: c.Time.Add(10 * time.Minute).UnixMilli(), SeverityID: ocsf.SeverityMedium, Severity: "Medium"}
	f.SetClass(ocsf.ClassDetectionFinding, 1, "Create")
	typ := "CLICKOPS"
	if c.RunKey != "" {
		typ = "OUT_OF_PLAN"
	}
	f.FindingInfo = &ocsf.FindingInfo{UID: c.Drift, Title: typ + ": " + c.Action + " on " + c.Resource, Types: []string{typ}}
	f.Metadata = ocsf.Metadata{UID: c.Drift, Version: ocsf.Version, CorrelationUID: c.UID, Product: ocsf.Product{Name: "trailkeeper", VendorName: "trailkeeper"}}
	provider := map[string]string{"aws": "AWS", "gcp": "GCP", "azure": "Azure"}[c.Cloud]
	f.Cloud = &ocsf.Cloud{Provider: provider, Account: &ocsf.Account{UID: c.Account}}
	f.Resources = []ocsf.ResourceDetails{{UID: c.Resource}}
	extra, _ := json.Marshal(map[string]any{"event_uid": c.UID, "drift_type": typ, "workspace": "infra/prod", "best_run": c.RunKey})
	f.Unmapped = ocsf.Unmapped{"trailkeeper": extra}
	f.StatusID, f.Status = 1, "Success"
	return f
}

// Messages returns the stream messages of changes [from, to) of a corpus
// of n: each event, then its drift finding if any.
func Messages(from, to, n int) []sink.Message {
	var out []sink.Message
	for i := from; i < to; i++ {
		c := At(i, n)
		out = append(out, sink.Message{Subject: jetstream.EventSubject(c.Cloud, c.Account, c.Cloud+".example"), ID: c.UID, Data: c.Event().AppendJSON(nil)})
		if c.Drift != "" {
			f := c.Finding()
			out = append(out, sink.Message{Subject: "audit.drift." + c.Cloud + "." + jetstream.Token(c.Account), ID: c.Drift, Data: f.AppendJSON(nil)})
		}
	}
	return out
}

// Apply indexes msgs as stream sequences firstSeq, firstSeq+1, …
func Apply(tb testing.TB, ix *index.Index, msgs []sink.Message, firstSeq uint64) {
	tb.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		batch := make([]index.Msg, n)
		for i, m := range msgs[:n] {
			batch[i] = index.Msg{Seq: firstSeq + uint64(i), Subject: m.Subject, Data: m.Data}
		}
		if err := ix.Apply(context.Background(), batch); err != nil {
			tb.Fatal(err)
		}
		msgs, firstSeq = msgs[n:], firstSeq+uint64(n)
	}
}

// UIDs walks every page of a query and returns the changes' uids.
func UIDs(tb testing.TB, ix *index.Index, q index.Query) []string {
	tb.Helper()
	var out []string
	for pages := 0; ; pages++ {
		p, err := ix.Changes(context.Background(), q)
		if err != nil {
			tb.Fatal(err)
		}
		for _, c := range p.Items {
			out = append(out, c.UID)
		}
		if p.Next == "" {
			return out
		}
		if pages > 100000 {
			tb.Fatal("pagination does not end")
		}
		q.Cursor = p.Next
	}
}
