package correlate

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/ocsfschema"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registry is a run registry on a fresh embedded JetStream with the
// AUDIT stream.
func registry(t *testing.T) *Registry {
	r, _ := registryOn(t)
	return r
}

func registryOn(t *testing.T) (*Registry, jetstream.JetStream) {
	_, _, js := embednatstest.Start(t)
	ctx := context.Background()
	if _, err := tkjs.EnsureStream(ctx, js, tkjs.StreamConfig{Name: "AUDIT", DuplicateWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRegistry(ctx, js, "trailkeeper-runs")
	if err != nil {
		t.Fatal(err)
	}
	return r, js
}

func TestTokenFitsEveryChannel(t *testing.T) {
	tok := Token("github:acme/infra:4711:1")
	if !regexp.MustCompile(`^[\w+=,.@-]{1,64}$`).MatchString(tok) || strings.ContainsAny(tok, ":/ ") || len(tok) != 18 {
		t.Errorf("token %q", tok)
	}
	if Token("a") == Token("b") {
		t.Error("tokens collide")
	}
	id := AzureCorrelationID("github:acme/infra:4711:1")
	if !uuidRE.MatchString(id) || id != AzureCorrelationID("github:acme/infra:4711:1") {
		t.Errorf("correlation id %q", id)
	}
	env := Environment("k")
	if env["TF_APPEND_USER_AGENT"] != "trailkeeper-run/"+Token("k") || env["ARM_CORRELATION_REQUEST_ID"] != AzureCorrelationID("k") {
		t.Errorf("environment %v", env)
	}
}

const (
	ciRole    = "arn:aws:iam::111122223333:role/gha-deployer"
	ciSession = "arn:aws:sts::111122223333:assumed-role/gha-deployer/gha-4711"
)

// ctEvent normalizes a CloudTrail record made by actor ARN, with ua.
func ctEvent(t *testing.T, id, arn, ua, name string, at time.Time, readOnly bool) *normalize.Event {
	role := ""
	if _, rest, ok := strings.Cut(arn, ":assumed-role/"); ok {
		role, _, _ = strings.Cut(rest, "/")
	}
	ident := map[string]any{"type": "AssumedRole", "arn": arn, "accountId": "111122223333", "principalId": "AROAX:s",
		"sessionContext": map[string]any{"sessionIssuer": map[string]any{"type": "Role", "arn": "arn:aws:iam::111122223333:role/" + role, "userName": role}}}
	if strings.Contains(arn, ":user/") {
		ident = map[string]any{"type": "IAMUser", "arn": arn, "accountId": "111122223333", "userName": "alice"}
	}
	rec, _ := json.Marshal(map[string]any{
		"eventVersion": "1.11", "eventID": id, "eventTime": at.UTC().Format(time.RFC3339), "eventSource": "ec2.amazonaws.com",
		"eventName": name, "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.5", "userAgent": ua, "readOnly": readOnly,
		"userIdentity": ident, "recipientAccountId": "111122223333", "requestParameters": map[string]any{"groupId": "sg-1"},
	})
	ev, err := normalize.Normalize(rec, normalize.FormatCloudTrail)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestLinks(t *testing.T) {
	reg := registry(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	end := start.Add(10 * time.Minute)
	run := Run{Key: "github:acme/infra:4711:1", Tool: "terraform", Orchestrator: "github", StartedAt: start, FinishedAt: &end,
		Commit: "abc123", Scope: Scope{Repo: "acme/infra", Workspace: "prod"}, Identities: []string{ciRole}}
	if err := reg.Put(ctx, run); err != nil {
		t.Fatal(err)
	}
	tfUA := "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.80.0 aws-sdk-go-v2/1.32"
	marked := tfUA + " trailkeeper-run/" + Token(run.Key)
	at := start.Add(3 * time.Minute)
	c := &Correlator{Registry: reg, Now: func() time.Time { return end.Add(time.Hour) }}
	for _, tc := range []struct {
		name     string
		ev       *normalize.Event
		band     string // "" for no link
		evidence string
	}{
		{"marker in the user agent, run's identity", ctEvent(t, "e1", ciSession, marked, "AuthorizeSecurityGroupIngress", at, false), BandAttested, "marker"},
		{"marker from another identity", ctEvent(t, "e2", "arn:aws:sts::111122223333:assumed-role/other/x", marked, "AuthorizeSecurityGroupIngress", at, false), BandAmbiguous, "possible spoofing"},
		{"no marker: identity, window and tool", ctEvent(t, "e3", ciSession, tfUA, "AuthorizeSecurityGroupIngress", at, false), BandInferred, "identity is the run's"},
		{"console edit inside the window", ctEvent(t, "e4", "arn:aws:iam::111122223333:user/alice", "Mozilla/5.0 (console.amazonaws.com)", "AuthorizeSecurityGroupIngress", at, false), BandAmbiguous, "console"},
		{"read-only call", ctEvent(t, "e5", ciSession, marked, "DescribeSecurityGroups", at, true), "", ""},
		{"outside every run", ctEvent(t, "e6", ciSession, tfUA, "AuthorizeSecurityGroupIngress", end.Add(time.Hour), false), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ok := c.Link(tc.ev.OCSF, c.Now())
			if tc.band == "" {
				if ok {
					t.Fatalf("linked: %+v", l)
				}
				return
			}
			if !ok || l.Band != tc.band || !strings.Contains(strings.Join(l.Evidence, "; "), tc.evidence) {
				t.Fatalf("link %+v, want band %s with evidence %q", l, tc.band, tc.evidence)
			}
		})
	}

	// A second run in the same window makes the inferred link ambiguous.
	run2 := run
	run2.Key, run2.Commit = "github:acme/infra:4712:1", "def456"
	_ = reg.Put(ctx, run2)
	l, _ := c.Link(ctEvent(t, "e7", ciSession, tfUA, "AuthorizeSecurityGroupIngress", at, false).OCSF, c.Now())
	if l.Band != BandAmbiguous {
		t.Errorf("two equal runs: band %s", l.Band)
	}
}

// TestCorrelateEnrichesValidOCSF: the link lands in the event's JSON as
// an iac.run enrichment and metadata.correlation_uid, still valid OCSF; an
// Azure event with the run's correlation id is attested; a run registered
// after its events re-scores them (no false drift later).
func TestCorrelateEnrichesValidOCSF(t *testing.T) {
	reg := registry(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	run := Run{Key: "hcp:acme/prod:run-abc", Tool: "terraform", Orchestrator: "hcp", StartedAt: start, Markers: []string{"terraform-run-abc123xyz"}}
	azure, _ := json.Marshal(map[string]any{
		"eventDataId": "evt-1", "eventTimestamp": start.Add(time.Minute).Format(time.RFC3339), "subscriptionId": "11111111-1111-1111-1111-111111111111",
		"operationName": map[string]any{"value": "Microsoft.Network/networkSecurityGroups/write"}, "status": map[string]any{"value": "Succeeded"},
		"correlationId": AzureCorrelationID(run.Key), "caller": "app-1", "resourceId": "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg",
		"category": map[string]any{"value": "Administrative"}, "level": "Informational",
	})
	azEv, err := normalize.Normalize(azure, normalize.FormatUnknown)
	if err != nil {
		t.Fatal(err)
	}
	hcpEv := ctEvent(t, "h1", "arn:aws:sts::111122223333:assumed-role/hcp/terraform-run-abc123xyz", "Terraform/1.9", "CreateBucket", start.Add(time.Minute), false)
	c := &Correlator{Registry: reg, Now: func() time.Time { return start.Add(time.Hour) }}
	if err := c.Correlate(ctx, []*normalize.Event{azEv, hcpEv}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(azEv.JSON), "iac.run") {
		t.Fatal("linked before the run was registered")
	}
	if err := reg.Put(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := c.Correlate(ctx, []*normalize.Event{azEv, hcpEv}); err != nil {
		t.Fatal(err)
	}
	schema, err := ocsfschema.Load("../ocsfschema/testdata/v1.8.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*normalize.Event{azEv, hcpEv} {
		var out struct {
			Metadata struct {
				CorrelationUID string `json:"correlation_uid"`
			}
			Enrichments []struct {
				Name, Value string
				Data        struct{ Band string }
			}
		}
		_ = json.Unmarshal(ev.JSON, &out)
		if out.Metadata.CorrelationUID != run.Key || len(out.Enrichments) != 1 || out.Enrichments[0].Data.Band != BandAttested {
			t.Errorf("%s: %s", ev.UID, ev.JSON)
		}
		if errs := schema.Validate(ev.JSON); len(errs) > 0 {
			t.Errorf("%s: not valid OCSF: %v", ev.UID, errs)
		}
	}
}

func TestAPI(t *testing.T) {
	reg := registry(t)
	srv := httptest.NewServer(Handler(reg, "s3cret", nil))
	defer srv.Close()
	do := func(method, path, token, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	good := `{"run_key":"github:acme/infra:1:1","tool":"terraform","orchestrator":"github","started_at":"2026-11-23T10:00:00Z","identities":["` + ciRole + `"]}`
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		field                           string
	}{
		{"no token", "POST", "/v1/runs", "", good, 401, ""},
		{"wrong token", "POST", "/v1/runs", "nope", good, 401, ""},
		{"unknown field", "POST", "/v1/runs", "s3cret", `{"run_key":"k1234567","tool":"terraform","colour":"red"}`, 400, "colour"},
		{"wrong type", "POST", "/v1/runs", "s3cret", `{"run_key":7}`, 400, "run_key"},
		{"invalid value", "POST", "/v1/runs", "s3cret", `{"run_key":"k1","tool":"terraform","orchestrator":"jenkins","started_at":"2026-11-23T10:00:00Z"}`, 400, "orchestrator"},
		{"oversized", "POST", "/v1/runs", "s3cret", `{"run_key":"` + strings.Repeat("x", MaxBody) + `"}`, 413, ""},
		{"register", "POST", "/v1/runs", "s3cret", good, 201, ""},
		{"get", "GET", "/v1/runs/github:acme%2Finfra:1:1", "s3cret", "", 200, ""},
		{"finish, bad status", "POST", "/v1/runs/github:acme%2Finfra:1:1/finish", "s3cret", `{"status":"done"}`, 400, "status"},
		{"finish", "POST", "/v1/runs/github:acme%2Finfra:1:1/finish", "s3cret", `{"status":"succeeded","finished_at":"2026-11-23T10:05:00Z"}`, 200, ""},
		{"unknown run", "GET", "/v1/runs/nope", "s3cret", "", 404, "run_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := do(tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || (tc.field != "" && out["field"] != tc.field) {
				t.Errorf("%d %v, want %d naming %q", status, out, tc.status, tc.field)
			}
		})
	}
	run, ok := reg.Get("github:acme/infra:1:1")
	if !ok || run.Status != "succeeded" || run.FinishedAt == nil {
		t.Errorf("stored run %+v", run)
	}
	if _, out := do("GET", "/v1/runs?since=2026-11-23T00:00:00Z", "s3cret", ""); len(out["runs"].([]any)) != 1 {
		t.Errorf("list: %v", out)
	}
}

func TestHCPWebhook(t *testing.T) {
	reg := registry(t)
	srv := httptest.NewServer(HCPWebhook(reg, "hook-secret"))
	defer srv.Close()
	post := func(body, sig string) int {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		if sig != "" {
			req.Header.Set("X-TFE-Notification-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(body string) string {
		m := hmac.New(sha512.New, []byte("hook-secret"))
		m.Write([]byte(body))
		return hex.EncodeToString(m.Sum(nil))
	}
	started := `{"run_id":"run-abc123","workspace_name":"prod","organization_name":"acme","run_created_by":"alice","notifications":[{"trigger":"run:applying","run_status":"applying","run_updated_at":"2026-11-23T10:00:00Z"}]}`
	done := `{"run_id":"run-abc123","workspace_name":"prod","organization_name":"acme","notifications":[{"trigger":"run:completed","run_status":"applied","run_updated_at":"2026-11-23T10:06:00Z"}]}`
	if got := post(started, ""); got != 401 {
		t.Errorf("unsigned: %d", got)
	}
	if got := post(started, sign(done)); got != 401 {
		t.Errorf("signature of another body: %d", got)
	}
	if got := post(started, sign(started)); got != 204 {
		t.Fatalf("signed: %d", got)
	}
	if got := post(done, sign(done)); got != 204 {
		t.Fatalf("signed: %d", got)
	}
	run, ok := reg.Get("hcp:prod:run-abc123")
	if !ok || run.Status != "succeeded" || run.FinishedAt == nil || !slices.Equal(run.Markers, []string{"terraform-run-run-abc123", "terraform-run-abc123"}) || run.Actor != "alice" {
		t.Errorf("run %+v", run)
	}
	// The session of the run's dynamic credentials, in either spelling,
	// attests the run.
	c := &Correlator{Registry: reg, Now: func() time.Time { return run.StartedAt.Add(time.Hour) }}
	for _, session := range []string{"terraform-run-run-abc123", "terraform-run-abc123"} {
		ev := ctEvent(t, session, "arn:aws:sts::111122223333:assumed-role/hcp-dynamic/"+session, "Terraform/1.9.8", "CreateBucket", run.StartedAt.Add(time.Second), false)
		if l, ok := c.Link(ev.OCSF, c.Now()); !ok || l.Band != BandAttested || l.Run.Key != run.Key {
			t.Errorf("session %s: link %+v", session, l)
		}
	}
}

// TestPlanAndApplyLogInfer: without markers, a run's plan and apply log
// make the link inferred (never attested), with the evidence named.
func TestPlanAndApplyLogInfer(t *testing.T) {
	reg := registry(t)
	api := runAPI(t, reg)
	post := func(path, body string) int { code, _ := api(path, body); return code }
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if s := post("/v1/runs", `{"run_key":"gh-77","tool":"terraform","orchestrator":"github","started_at":"2026-11-23T10:00:00Z"}`); s != 201 {
		t.Fatalf("register: %d", s)
	}
	plan := `{"resource_changes":[{"address":"aws_security_group.web","change":{"actions":["update"],"before":{"id":"sg-0abc1234","arn":"` + sgARN + `"},"after":{"id":"sg-0abc1234"}}},{"address":"aws_s3_bucket.b","change":{"actions":["no-op"]}}]}`
	if s := post("/v1/runs/gh-77/plan", plan); s != 200 {
		t.Fatalf("plan: %d", s)
	}
	log := `{"@level":"info","@timestamp":"2026-11-23T10:02:00Z","type":"apply_start","hook":{"resource":{"addr":"aws_security_group.web"},"action":"update"}}
{"@level":"info","@timestamp":"2026-11-23T10:02:09Z","type":"apply_complete","hook":{"resource":{"addr":"aws_security_group.web"},"action":"update","id_value":"sg-0abc1234"}}`
	if s := post("/v1/runs/gh-77/apply-log", log); s != 200 {
		t.Fatalf("apply log: %d", s)
	}
	if s := post("/v1/runs/gh-77/plan", `[1,2]`); s != 400 {
		t.Errorf("a bad plan: %d", s)
	}
	run, _ := reg.Get("gh-77")
	if len(run.Plan) != 1 || len(run.Applied) != 1 || run.Applied[0].ID != "sg-0abc1234" {
		t.Fatalf("run %+v", run)
	}
	ev := onSG(ctEvent(t, "p1", "arn:aws:sts::111122223333:assumed-role/oidc/x", "Terraform/1.9.8", "AuthorizeSecurityGroupIngress", start.Add(2*time.Minute+5*time.Second), false))
	c := &Correlator{Registry: reg, Now: func() time.Time { return start.Add(time.Hour) }}
	l, ok := c.Link(ev.OCSF, c.Now())
	ev2 := strings.Join(l.Evidence, "; ")
	if !ok || l.Band != BandInferred || l.Confidence < 0.85 || l.Confidence >= 0.9 || !strings.Contains(ev2, "plan") || !strings.Contains(ev2, "apply window") {
		t.Errorf("link %+v", l)
	}
}

// TestConfigureAWSCredentialsRunID: the STS call of configure-aws-credentials
// carries md/run_id#<id>; the access key it issues attests every later call
// signed with it.
func TestConfigureAWSCredentialsRunID(t *testing.T) {
	reg := registry(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	run := Run{Key: "github:acme/infra:4711:1", Tool: "terraform", Orchestrator: "github", StartedAt: start}
	if err := reg.Put(ctx, run); err != nil {
		t.Fatal(err)
	}
	sts, _ := json.Marshal(map[string]any{
		"eventVersion": "1.08", "eventID": "sts-1", "eventTime": start.Add(time.Minute).Format(time.RFC3339), "eventSource": "sts.amazonaws.com",
		"eventName": "AssumeRoleWithWebIdentity", "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.5",
		"userAgent":         "configure-aws-credentials-for-github-actions md/run_id#4711",
		"userIdentity":      map[string]any{"type": "WebIdentityUser", "principalId": "token.actions.githubusercontent.com:sts.amazonaws.com:repo:acme/infra", "userName": "repo:acme/infra:ref:refs/heads/main", "identityProvider": "token.actions.githubusercontent.com"},
		"requestParameters": map[string]any{"roleArn": ciRole, "roleSessionName": "GitHubActions"},
		"responseElements": map[string]any{"credentials": map[string]any{"accessKeyId": "ASIAQRUNKEY00000001", "expiration": "Nov 23, 2026, 11:01:00 AM"},
			"assumedRoleUser": map[string]any{"arn": "arn:aws:sts::111122223333:assumed-role/gha-deployer/GitHubActions", "assumedRoleId": "AROAX:GitHubActions"}},
		"recipientAccountId": "111122223333",
	})
	stsEv, err := normalize.Normalize(sts, normalize.FormatCloudTrail)
	if err != nil {
		t.Fatal(err)
	}
	later, _ := json.Marshal(map[string]any{
		"eventVersion": "1.08", "eventID": "later-1", "eventTime": start.Add(3 * time.Minute).Format(time.RFC3339), "eventSource": "ec2.amazonaws.com",
		"eventName": "CreateSecurityGroup", "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.5", "userAgent": "aws-cli/2",
		"userIdentity":       map[string]any{"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/gha-deployer/GitHubActions", "accountId": "111122223333", "accessKeyId": "ASIAQRUNKEY00000001"},
		"recipientAccountId": "111122223333",
	})
	laterEv, err := normalize.Normalize(later, normalize.FormatCloudTrail)
	if err != nil {
		t.Fatal(err)
	}
	c := &Correlator{Registry: reg}
	if err := c.Correlate(ctx, []*normalize.Event{stsEv, laterEv}); err != nil {
		t.Fatal(err)
	}
	l, _ := c.Link(laterEv.OCSF, start.Add(time.Hour))
	if l.Band != BandAttested || l.Run.Key != run.Key || !strings.Contains(strings.Join(l.Evidence, ""), "ASIAQRUNKEY00000001") {
		t.Errorf("link %+v", l)
	}
}

// TestGCPUserAgentMarker: a GCP apply through Workload Identity carries the
// token at the end of callerSuppliedUserAgent (Google appends more after
// it); the run lists the service account.
func TestGCPUserAgentMarker(t *testing.T) {
	reg := registry(t)
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	sa := "deployer@acme-prod.iam.gserviceaccount.com"
	run := Run{Key: "gitlab:acme/infra:55:66", Tool: "terraform", Orchestrator: "gitlab", StartedAt: start, Identities: []string{sa}}
	if err := reg.Put(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(map[string]any{
		"logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity", "insertId": "g1",
		"timestamp": start.Add(2 * time.Minute).Format(time.RFC3339), "resource": map[string]any{"type": "gce_firewall_rule", "labels": map[string]any{"project_id": "acme-prod"}},
		"protoPayload": map[string]any{"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "compute.googleapis.com",
			"methodName": "v1.compute.firewalls.patch", "resourceName": "projects/acme-prod/global/firewalls/allow-web",
			"authenticationInfo": map[string]any{"principalEmail": sa},
			"requestMetadata": map[string]any{"callerIp": "203.0.113.7",
				"callerSuppliedUserAgent": "Terraform/1.9.8 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0 terraform-provider-google/6.12.0 trailkeeper-run/" + Token(run.Key) + ",gzip(gfe)"}},
	})
	ev, err := normalize.Normalize(entry, normalize.FormatGCPAudit)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := (&Correlator{Registry: reg}).Link(ev.OCSF, start.Add(time.Hour))
	if !ok || l.Band != BandAttested || l.Run.Key != run.Key {
		t.Errorf("link %+v", l)
	}
}

// In a fleet, a run registered through one daemon is known to the others.
func TestRegistryWatchSeesOtherDaemons(t *testing.T) {
	a, js := registryOn(t)
	ctx := context.Background()
	b, err := OpenRegistry(ctx, js, "trailkeeper-runs")
	if err != nil {
		t.Fatal(err)
	}
	// Stored after b loaded and before it watches: not missed.
	if err := a.Put(ctx, Run{Key: "github:acme/infra:0:1", Tool: "terraform", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Watch(wctx) }()
	defer func() { cancel(); <-done }()
	if err := a.Put(ctx, Run{Key: "github:acme/infra:1:1", Tool: "terraform", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetState(ctx, "acme/prod", State{IDs: []string{"arn:aws:s3:::bucket-a"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, gap := b.Get("github:acme/infra:0:1")
		_, run := b.Get("github:acme/infra:1:1")
		_, managed := b.managedBy("arn:aws:s3:::bucket-a")
		if gap && run && managed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other daemon's registry: run stored before its watch %v, run %v, state %v", gap, run, managed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A plan's creates have no cloud id before apply. What the run reports
// afterwards names them: the apply log's apply_complete id_value (the
// Terraform and OpenTofu machine-readable UI), the state posted after the
// run (by resource address), and for GCP and Azure the name the plan
// gives. A change by the run to a resource it planned to create is
// planned; one to anything else is not.
func TestPlannedCreatesInThreeClouds(t *testing.T) {
	reg := registry(t)
	api := runAPI(t, reg)
	post := func(path, body string) {
		t.Helper()
		if code, out := api(path, body); code >= 300 {
			t.Fatalf("POST %s: %d %s", path, code, out)
		}
	}
	post("/v1/runs", `{"run_key":"gh-90","tool":"terraform","orchestrator":"github","started_at":"2026-11-23T10:00:00Z","scope":{"repo":"acme/infra","workspace":"acme/prod"}}`)
	// terraform show -json of a plan: every change a create, ids unknown.
	plan := `{"format_version":"1.2","resource_changes":[
{"address":"aws_instance.web","type":"aws_instance","change":{"actions":["create"],"before":null,"after":{"ami":"ami-0c55b159cbfafe1f0","instance_type":"t3.micro","tags":{"Name":"web"}},"after_unknown":{"id":true,"arn":true}}},
{"address":"aws_iam_role.deployer","type":"aws_iam_role","change":{"actions":["create"],"before":null,"after":{"assume_role_policy":"{}"},"after_unknown":{"id":true,"arn":true,"name":true}}},
{"address":"google_storage_bucket.assets","type":"google_storage_bucket","change":{"actions":["create"],"before":null,"after":{"name":"acme-assets-eu","location":"EU"},"after_unknown":{"id":true,"self_link":true}}},
{"address":"azurerm_resource_group.app","type":"azurerm_resource_group","change":{"actions":["create"],"before":null,"after":{"name":"rg-app-prod","location":"westeurope"},"after_unknown":{"id":true}}}]}`
	post("/v1/runs/gh-90/plan", plan)
	// terraform apply -json: the instance's id arrives with apply_complete.
	post("/v1/runs/gh-90/apply-log", `{"@level":"info","@message":"aws_instance.web: Creating...","@timestamp":"2026-11-23T10:01:00.000000Z","hook":{"resource":{"addr":"aws_instance.web","module":"","resource":"aws_instance.web","implied_provider":"aws","resource_type":"aws_instance","resource_name":"web","resource_key":null},"action":"create"},"type":"apply_start"}
{"@level":"info","@message":"aws_instance.web: Creation complete after 32s [id=i-0a1b2c3d4e5f60718]","@timestamp":"2026-11-23T10:01:32.000000Z","hook":{"resource":{"addr":"aws_instance.web","module":"","resource":"aws_instance.web","implied_provider":"aws","resource_type":"aws_instance","resource_name":"web","resource_key":null},"action":"create","id_key":"id","id_value":"i-0a1b2c3d4e5f60718","elapsed_seconds":32},"type":"apply_complete"}`)
	// The state posted after the run knows the role, which the apply log
	// (cut short here) did not report.
	post("/v1/state?workspace=acme/prod", `{"format_version":"1.0","values":{"root_module":{"resources":[
{"address":"aws_instance.web","type":"aws_instance","values":{"id":"i-0a1b2c3d4e5f60718","arn":"arn:aws:ec2:eu-west-1:111122223333:instance/i-0a1b2c3d4e5f60718"}},
{"address":"aws_iam_role.deployer","type":"aws_iam_role","values":{"id":"deployer-20261123","arn":"arn:aws:iam::111122223333:role/deployer-20261123","name":"deployer-20261123"}}]}}}`)
	run, ok := reg.Get("gh-90")
	if !ok {
		t.Fatal("no run")
	}
	for _, tc := range []struct {
		name, uid, want string
	}{
		{"aws instance, by the apply log's id", "arn:aws:ec2:eu-west-1:111122223333:instance/i-0a1b2c3d4e5f60718", "aws_instance.web"},
		{"aws instance, bare id", "i-0a1b2c3d4e5f60718", "aws_instance.web"},
		{"aws role, by the state", "arn:aws:iam::111122223333:role/deployer-20261123", "aws_iam_role.deployer"},
		{"gcp bucket, by its planned name", "projects/_/buckets/acme-assets-eu", "google_storage_bucket.assets"},
		{"azure group, by its planned name", "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/rg-app-prod", "azurerm_resource_group.app"},
		{"another instance", "arn:aws:ec2:eu-west-1:111122223333:instance/i-0ffffffffffffffff", ""},
		{"another group", "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/rg-app-prod-old", ""},
	} {
		addr, ok := run.Planned([]string{tc.uid})
		if addr != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: planned %q %v, want %q", tc.name, addr, ok, tc.want)
		}
	}
	// A state posted before the plan: the plan learns from it too.
	post("/v1/runs", `{"run_key":"gh-91","tool":"terraform","orchestrator":"github","started_at":"2026-11-23T11:00:00Z","scope":{"workspace":"acme/prod"}}`)
	post("/v1/runs/gh-91/plan", `{"resource_changes":[{"address":"aws_iam_role.deployer","change":{"actions":["update"],"before":{},"after":{}}}]}`)
	if run, _ := reg.Get("gh-91"); !func() bool {
		_, ok := run.Planned([]string{"arn:aws:iam::111122223333:role/deployer-20261123"})
		return ok
	}() {
		t.Errorf("a plan posted after the state did not learn its ids: %+v", run.Plan)
	}
}

// Only a link names its run: an ambiguous or unexplained event carries
// the band, and its best guess only as candidate_run_key.
func TestOnlyALinkNamesItsRun(t *testing.T) {
	run := Run{Key: "github:acme/infra:7:1", Tool: "terraform"}
	for _, tc := range []struct {
		band      string
		named     bool
		run       Run
		wantValue string
		candidate string
	}{
		{BandAttested, true, run, run.Key, ""},
		{BandInferred, true, run, run.Key, ""},
		{BandAmbiguous, false, run, BandAmbiguous, run.Key},
		{BandUnexplained, false, run, BandUnexplained, run.Key},
		{BandUnexplained, false, Run{}, BandUnexplained, ""}, // a spoofed marker, no candidate
	} {
		e := &ocsf.Event{}
		attach(e, Link{Run: tc.run, Band: tc.band, Confidence: 0.5})
		var data map[string]any
		_ = json.Unmarshal(e.Enrichments[0].Data, &data)
		if got := e.Metadata.CorrelationUID != ""; got != tc.named || e.Enrichments[0].Value != tc.wantValue ||
			(data["run_key"] != nil) != tc.named || fmt.Sprint(data["candidate_run_key"]) != map[bool]string{true: tc.candidate, false: "<nil>"}[tc.candidate != ""] {
			t.Errorf("%s: correlation_uid %q, value %q, data %v", tc.band, e.Metadata.CorrelationUID, e.Enrichments[0].Value, data)
		}
	}
}

// A marker proves its run only inside the run's window: the same session
// name replayed days after the run finished attests nothing and is
// reported as a possible replay.
func TestMarkerOutsideItsWindowIsAReplay(t *testing.T) {
	reg := registry(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	done := start.Add(20 * time.Minute)
	run := Run{Key: "hcp:acme/prod:run-Zq1", Tool: "terraform", Orchestrator: "hcp", StartedAt: start, FinishedAt: &done, Markers: HCPMarkers("run-Zq1")}
	if err := reg.Put(ctx, run); err != nil {
		t.Fatal(err)
	}
	c := &Correlator{Registry: reg, Now: func() time.Time { return start.Add(96 * time.Hour) }}
	session := "arn:aws:sts::111122223333:assumed-role/hcp-dynamic/terraform-run-run-Zq1"
	in := ctEvent(t, "in", session, "Terraform/1.9.8", "CreateBucket", start.Add(5*time.Minute), false)
	if l, ok := c.Link(in.OCSF, c.Now()); !ok || l.Band != BandAttested {
		t.Errorf("inside the window: %+v", l)
	}
	later := ctEvent(t, "later", session, "Terraform/1.9.8", "DeleteBucket", start.Add(72*time.Hour), false)
	l, ok := c.Link(later.OCSF, c.Now())
	if ok && l.Band == BandAttested || !strings.Contains(strings.Join(l.Evidence, "; "), "possible replay") {
		t.Errorf("three days later: %v %+v", ok, l)
	}
}

// The run API takes the CI systems' own words: markers as a list or as an
// object naming each kind, and how a run ended in Terraform's, HCP
// Terraform's, GitLab's and GitHub's vocabulary.
func TestRunAPIAcceptsTheCISystemsWords(t *testing.T) {
	reg := registry(t)
	post := runAPI(t, reg)
	if code, body := post("/v1/runs", `{"run_key":"gl-1","tool":"terraform","orchestrator":"gitlab","started_at":"2026-11-23T10:00:00Z",
		"markers":{"session_name":"GitLabRunner-4711-998877","source_identity":["gitlab-4711-998877"]}}`); code != 201 {
		t.Fatalf("markers by kind: %d %s", code, body)
	}
	if run, _ := reg.Get("gl-1"); !slices.Equal([]string(run.Markers), []string{"GitLabRunner-4711-998877", "gitlab-4711-998877"}) {
		t.Errorf("markers %v", run.Markers)
	}
	if code, body := post("/v1/runs", `{"run_key":"gl-2","tool":"terraform","orchestrator":"gitlab","started_at":"2026-11-23T10:00:00Z","markers":{"cookie":"abcdefghij"}}`); code != 400 || !strings.Contains(body, "markers.cookie") {
		t.Errorf("an unknown kind: %d %s", code, body)
	}
	for i, tc := range []struct{ word, want string }{
		{"success", "succeeded"}, {"failure", "failed"}, {"errored", "failed"}, {"canceled", "canceled"},
		{"cancelled", "canceled"}, {"discarded", "canceled"}, {"applied", "succeeded"}, {"Timed_Out", "failed"},
	} {
		key := fmt.Sprintf("gh-%d", i)
		post("/v1/runs", `{"run_key":"`+key+`","tool":"terraform","orchestrator":"github","started_at":"2026-11-23T10:00:00Z"}`)
		if code, body := post("/v1/runs/"+key+"/finish", `{"status":"`+tc.word+`","finished_at":"2026-11-23T10:05:00Z"}`); code != 200 {
			t.Errorf("%s: %d %s", tc.word, code, body)
		}
		if run, _ := reg.Get(key); run.Status != tc.want {
			t.Errorf("%s: status %q, want %q", tc.word, run.Status, tc.want)
		}
	}
	post("/v1/runs", `{"run_key":"gh-x","tool":"terraform","orchestrator":"github","started_at":"2026-11-23T10:00:00Z"}`)
	if code, body := post("/v1/runs/gh-x/finish", `{"status":"maybe"}`); code != 400 || !strings.Contains(body, "status") {
		t.Errorf("an unknown status: %d %s", code, body)
	}
}

// runAPI serves the run API on reg and returns a poster with the token.
func runAPI(t *testing.T, reg *Registry) func(path, body string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(Handler(reg, "s3cret-s3cret-s3cret", nil))
	t.Cleanup(srv.Close)
	return func(path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret-s3cret-s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}
