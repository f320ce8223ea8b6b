package correlate

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/ocsfschema"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
	"github.com/trailkeeper/trailkeeper/sink"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

const sgARN = "arn:aws:ec2:eu-west-1:111122223333:security-group/sg-0abc1234"

// onSG makes an event touch the managed security group.
func onSG(ev *normalize.Event) *normalize.Event {
	ev.OCSF.Resources = []ocsf.ResourceDetails{{UID: sgARN, Type: "AWS::EC2::SecurityGroup"}}
	_ = ev.Encode()
	return ev
}

// TestDriftScenarios runs the detector on a real stream: a console edit of
// a managed security group is CLICKOPS; a terraform apply with CI
// credentials outside any run is IAC_OUT_OF_BAND; an attested run's change
// and a change whose run is registered late (inside the grace) are not
// drift; nor is a change to an unmanaged resource.
func TestDriftScenarios(t *testing.T) {
	reg, js := registryOn(t)
	ctx := context.Background()
	state := `{"values":{"root_module":{"resources":[],"child_modules":[{"resources":[{"address":"module.net.aws_security_group.web","values":{"id":"sg-0abc1234","arn":"` + sgARN + `"}}]}]}}}`
	state0, err := stateIDs([]byte(state))
	if err != nil || len(state0.IDs) != 2 || len(state0.ByAddress["module.net.aws_security_group.web"]) != 2 {
		t.Fatalf("state ids %v %v", state0, err)
	}
	if err := reg.SetState(ctx, "acme/prod", state0); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	attested := Run{Key: "github:acme/infra:1:1", Tool: "terraform", Orchestrator: "github", StartedAt: now.Add(-time.Hour), Identities: []string{ciRole}}
	_ = reg.Put(ctx, attested)
	tfUA := "Terraform/1.9.8 terraform-provider-aws/5.80.0"
	lateKey := "github:acme/infra:2:1"
	planned := Run{Key: "github:acme/infra:3:1", Tool: "terraform", Orchestrator: "github", StartedAt: now.Add(-time.Hour), Identities: []string{ciRole},
		Plan: []Change{{Address: "aws_s3_bucket.logs", Actions: []string{"create"}, IDs: []string{"arn:aws:s3:::acme-logs"}},
			{Address: "aws_instance.web", Actions: []string{"create"}}}, // a create: no id in the plan
		Applied: []Applied{{Address: "aws_instance.web", ID: "i-0a1b2c3d4e5f60718", Start: now.Add(-25 * time.Minute), End: now.Add(-24 * time.Minute)}}}
	_ = reg.Put(ctx, planned)
	// The run's change to the instance it planned to create (the apply log
	// named its id): planned, no finding.
	plannedCreate := ctEvent(t, "planned-create", ciSession, tfUA+" trailkeeper-run/"+Token(planned.Key), "RunInstances", now.Add(-25*time.Minute), false)
	plannedCreate.OCSF.Resources = []ocsf.ResourceDetails{{UID: "arn:aws:ec2:eu-west-1:111122223333:instance/i-0a1b2c3d4e5f60718", Type: "AWS::EC2::Instance"}}
	_ = plannedCreate.Encode()
	outOfPlan := ctEvent(t, "out-of-plan", ciSession, tfUA+" trailkeeper-run/"+Token(planned.Key), "PutBucketPolicy", now.Add(-20*time.Minute), false)
	outOfPlan.OCSF.Resources = []ocsf.ResourceDetails{{UID: "arn:aws:s3:::acme-data", Type: "AWS::S3::Bucket"}}
	_ = outOfPlan.Encode()
	evs := []*normalize.Event{
		onSG(ctEvent(t, "console", "arn:aws:iam::111122223333:user/alice", "Mozilla/5.0 (console.amazonaws.com)", "AuthorizeSecurityGroupIngress", now.Add(-2*time.Hour), false)),
		onSG(ctEvent(t, "local-apply", ciSession, tfUA, "RevokeSecurityGroupIngress", now.Add(-3*time.Hour), false)),
		onSG(ctEvent(t, "attested", ciSession, tfUA+" trailkeeper-run/"+Token(attested.Key), "AuthorizeSecurityGroupIngress", now.Add(-30*time.Minute), false)),
		onSG(ctEvent(t, "late-run", ciSession, tfUA, "ModifySecurityGroupRules", now, false)),
		ctEvent(t, "unmanaged", "arn:aws:iam::111122223333:user/alice", "Mozilla/5.0", "CreateBucket", now.Add(-2*time.Hour), false),
		outOfPlan,
		plannedCreate,
	}
	pub := tkjs.NewPublisher(js, "AUDIT")
	var msgs []sink.Message
	for _, ev := range evs {
		msgs = append(msgs, sink.Message{Subject: tkjs.EventSubject(ev.Cloud, ev.Account, ev.Service), ID: ev.UID, Data: ev.JSON})
	}
	if err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// The late run's record arrives after its event, inside the grace.
	time.AfterFunc(300*time.Millisecond, func() {
		_ = reg.Put(ctx, Run{Key: lateKey, Tool: "terraform", Orchestrator: "github", StartedAt: now.Add(-time.Minute), Identities: []string{ciRole}})
	})
	runCtx, cancel := context.WithCancel(ctx)
	d := &Detector{JS: js, Stream: "AUDIT", Correlator: &Correlator{Registry: reg}, Sink: pub, Grace: 2 * time.Second}
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()

	findings := map[string]string{} // event uid → drift type
	schema, err := ocsfschema.Load("../ocsfschema/testdata/v1.8.0")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && len(findings) < 3 {
		st, _ := js.Stream(ctx, "AUDIT")
		cons, _ := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"audit.drift.>"}})
		batch, _ := cons.Fetch(10, jetstream.FetchMaxWait(200*time.Millisecond))
		for m := range batch.Messages() {
			var f struct {
				Metadata struct {
					CorrelationUID string `json:"correlation_uid"`
				}
				FindingInfo struct{ Types []string } `json:"finding_info"`
			}
			_ = json.Unmarshal(m.Data(), &f)
			findings[f.Metadata.CorrelationUID] = f.FindingInfo.Types[0]
			if errs := schema.Validate(m.Data()); len(errs) > 0 {
				t.Errorf("finding is not valid OCSF: %v\n%s", errs, m.Data())
			}
			if m.Subject() != "audit.drift.aws.111122223333" {
				t.Errorf("subject %s", m.Subject())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // past the late run's grace: no finding must come for it
	cancel()
	<-done
	want := map[string]string{"aws:console": DriftClickOps, "aws:local-apply": DriftIaCOutOfBand, "aws:out-of-plan": DriftOutOfPlan}
	for uid, typ := range want {
		if findings[uid] != typ {
			t.Errorf("%s: finding %q, want %s (all: %v)", uid, findings[uid], typ, findings)
		}
	}
	st, _ := js.Stream(ctx, "AUDIT")
	info, _ := st.Info(ctx, jetstream.WithSubjectFilter("audit.drift.>"))
	n := uint64(0)
	for _, c := range info.State.Subjects {
		n += c
	}
	if n != 3 {
		t.Errorf("%d findings on the stream, want 3: %v", n, findings)
	}
}

// The drift type comes from the client: Azure records have no user agent,
// so the caller's application id tells the portal from the CLI; CloudTrail
// says sessionCredentialFromConsole; user agents do the rest.
func TestDriftTypeByClient(t *testing.T) {
	azure := func(appid string) *ocsf.Event {
		return &ocsf.Event{RawData: `{"caller":"alice@acme.example","claims":{"appid":"` + appid + `","http://schemas.microsoft.com/identity/claims/objectidentifier":"7d1f…"},"operationName":{"value":"Microsoft.Network/networkSecurityGroups/securityRules/write"}}`}
	}
	withUA := func(raw, ua string) *ocsf.Event {
		return &ocsf.Event{RawData: raw, HTTPRequest: &ocsf.HTTPRequest{UserAgent: ua}}
	}
	for _, tc := range []struct {
		name string
		e    *ocsf.Event
		want string
	}{
		{"Azure Portal", azure("c44b4083-3bb0-49c1-b47d-974e53cbdf3c"), DriftClickOps},
		{"Azure CLI", azure("04b07795-8ddb-461a-bbee-02f9e1bf7b46"), DriftManualCLI},
		{"Azure PowerShell", azure("1950a258-227b-4e31-a9cf-717495945fc2"), DriftManualCLI},
		{"Azure, another app (a pipeline's own service principal)", azure("3f2b8c1e-0d4a-4e7b-9c55-1a2b3c4d5e6f"), DriftManualCLI},
		{"AWS console session", withUA(`{"sessionCredentialFromConsole":"true"}`, "AWS Internal"), DriftClickOps},
		{"AWS console user agent", withUA(`{}`, "Mozilla/5.0 (Macintosh) console.amazonaws.com"), DriftClickOps},
		{"AWS CLI", withUA(`{}`, "aws-cli/2.22.0 md/command#ec2.authorize-security-group-ingress"), DriftManualCLI},
		{"GCP console", withUA(`{}`, "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0,gzip(gfe)"), DriftClickOps},
		{"gcloud", withUA(`{}`, "google-cloud-sdk gcloud/503.0.0 command/gcloud.compute.firewall-rules.update"), DriftManualCLI},
		{"Terraform outside a run", withUA(`{}`, "Terraform/1.9.8 terraform-provider-aws/5.80.0"), DriftIaCOutOfBand},
	} {
		if got := driftType(tc.e, Link{}); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
