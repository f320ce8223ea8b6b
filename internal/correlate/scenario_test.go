package correlate

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	tkjs "github.com/trailkeeper/trailkeeper/sink/jetstream"
)

// TestScenarioThroughTheDaemonPath: a trail file of a GitHub Actions apply
// (the role chain's session named with the run's token) and a console edit
// goes through the files collector, the pipeline with the correlator, and
// the embedded JetStream; the apply's events arrive attested, the console
// edit unlinked, reads untouched.
func TestScenarioThroughTheDaemonPath(t *testing.T) {
	reg, js := registryOn(t)
	ctx := context.Background()
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	run := Run{Key: "github:acme/infra:8080:1", Tool: "terraform", Orchestrator: "github", StartedAt: start, Identities: []string{ciRole}}
	if err := reg.Put(ctx, run); err != nil {
		t.Fatal(err)
	}
	session := "arn:aws:sts::111122223333:assumed-role/gha-deployer/" + Token(run.Key)
	tfUA := "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 terraform-provider-aws/5.80.0"
	var recs []json.RawMessage
	for i, r := range []struct {
		arn, ua, name string
		read          bool
	}{
		{session, tfUA, "CreateSecurityGroup", false},
		{session, tfUA, "AuthorizeSecurityGroupIngress", false},
		{session, tfUA, "DescribeSecurityGroups", true},
		{"arn:aws:iam::111122223333:user/alice", "Mozilla/5.0 (console.amazonaws.com)", "RevokeSecurityGroupIngress", false},
	} {
		ev := ctEvent(t, "s"+string(rune('0'+i)), r.arn, r.ua, r.name, start.Add(time.Duration(i+1)*time.Minute), r.read)
		recs = append(recs, json.RawMessage(ev.OCSF.RawData))
	}
	dir := t.TempDir()
	body, _ := json.Marshal(map[string]any{"Records": recs})
	path := filepath.Join(dir, "111122223333_CloudTrail_eu-west-1_20261123T1000Z_x.json")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(path, old, old)

	fcfg := files.NewConfig()
	fcfg.Name, fcfg.Path, fcfg.Settle = "trail-files", config.FilePath(dir), 0
	p := pipeline.New(pipeline.Settings{
		Source: "trail-files", Stream: collectors.Stream{Key: "trail-files", Collector: files.New(fcfg, collectors.Settings{})},
		Store: checkpoint.NewMemory(), Sink: tkjs.NewPublisher(js, "AUDIT"), Correlator: &Correlator{Registry: reg},
		PollInterval: 20 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = p.Run(runCtx); close(done) }()
	got := map[string]string{} // event uid → band ("" when unlinked)
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		st, _ := js.Stream(ctx, "AUDIT")
		cons, _ := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"audit.aws.>"}})
		batch, _ := cons.Fetch(10, jetstream.FetchMaxWait(200*time.Millisecond))
		for m := range batch.Messages() {
			var ev struct {
				Metadata    struct{ UID string }
				Enrichments []struct {
					Name string
					Data struct{ Band string }
				}
			}
			_ = json.Unmarshal(m.Data(), &ev)
			band := ""
			for _, e := range ev.Enrichments {
				if e.Name == "iac.run" {
					band = e.Data.Band
				}
			}
			got[ev.Metadata.UID] = band
		}
	}
	cancel()
	<-done
	want := map[string]string{"aws:s0": BandAttested, "aws:s1": BandAttested, "aws:s2": "", "aws:s3": BandAmbiguous}
	for uid, band := range want {
		if b, ok := got[uid]; !ok || b != band {
			t.Errorf("%s: band %q (seen %v), want %q", uid, b, ok, band)
		}
	}
}
