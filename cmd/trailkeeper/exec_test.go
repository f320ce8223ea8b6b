package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
)

func TestExecRegistersRunsAndPassesStatus(t *testing.T) {
	_, _, js := embednatstest.Start(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.>", "iac.>"}}); err != nil {
		t.Fatal(err)
	}
	reg, err := correlate.OpenRegistry(ctx, js, "runs")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(correlate.Handler(reg, "token-0123456789abcdef", nil))
	defer srv.Close()

	key := "github:acme/infra:99:1"
	script := `echo "UA=$TF_APPEND_USER_AGENT"; echo "AZ=$ARM_CORRELATION_REQUEST_ID"; echo '{"@level":"info","@timestamp":"2026-11-23T10:00:00Z","type":"apply_start","hook":{"resource":{"addr":"aws_s3_bucket.b"}}}'; echo '{"@level":"info","type":"apply_complete","hook":{"resource":{"addr":"aws_s3_bucket.b"},"id_value":"b"}}'; exit 3`
	cmd := command(t, binary, "exec", "--server", srv.URL, "--token", "token-0123456789abcdef", "--run-key", key,
		"--identity", "arn:aws:iam::111122223333:role/gha", "--", "sh", "-c", script)
	cmd.Env = append(cmd.Environ(), "TF_APPEND_USER_AGENT=existing/1.0")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v\n%s", err, errOut.String())
	}
	tok := correlate.Token(key)
	for _, want := range []string{"UA=existing/1.0 trailkeeper-run/" + tok, "AZ=" + correlate.AzureCorrelationID(key), `"type":"apply_complete"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), tok) {
		t.Errorf("the session name to use is not printed:\n%s", errOut.String())
	}
	run, ok := reg.Get(key)
	if !ok || run.Status != "failed" || run.FinishedAt == nil || run.Identities[0] != "arn:aws:iam::111122223333:role/gha" {
		t.Errorf("run %+v", run)
	}
	if len(run.Applied) != 1 || run.Applied[0].ID != "b" {
		t.Errorf("the apply log was not uploaded: %+v", run.Applied)
	}

	// run-token prints the same token, for the session name of an earlier step.
	if b, err := command(t, binary, "run-token", "--run-key", key).Output(); err != nil || strings.TrimSpace(string(b)) != tok {
		t.Errorf("run-token: %q %v, want %s", b, err, tok)
	}
	gh := command(t, binary, "run-token")
	gh.Env = append(cmd.Environ(), "GITHUB_RUN_ID=99", "GITHUB_REPOSITORY=acme/infra", "GITHUB_RUN_ATTEMPT=1")
	if b, err := gh.Output(); err != nil || strings.TrimSpace(string(b)) != tok {
		t.Errorf("run-token from the GitHub environment: %q %v, want %s", b, err, tok)
	}

	// A server that cannot be reached never blocks the command.
	cmd = command(t, binary, "exec", "--server", "http://127.0.0.1:1", "--run-key", "k-unreachable", "--", "true")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("unreachable server: %v\n%s", err, b)
	}
}

func TestCIRunKeys(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		env  map[string]string
		key  string
		orch string
	}{
		{map[string]string{"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/infra", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_SHA": "abc"}, "github:acme/infra:42:2", "github"},
		{map[string]string{"GITLAB_CI": "true", "CI_PROJECT_PATH": "acme/infra", "CI_PIPELINE_ID": "7", "CI_JOB_ID": "8"}, "gitlab:acme/infra:7:8", "gitlab"},
		{map[string]string{"TFC_RUN_ID": "run-abcdef", "TFC_WORKSPACE_NAME": "prod"}, "hcp:prod:run-abcdef", "hcp"},
		{map[string]string{"SPACELIFT_RUN_ID": "01HXYZABCDEF", "TF_VAR_spacelift_stack_id": "net"}, "spacelift:net:01HXYZABCDEF", "spacelift"},
		{map[string]string{"ENV0_DEPLOYMENT_LOG_ID": "d1", "ENV0_ENVIRONMENT_ID": "e1"}, "env0:e1:d1", "env0"},
		{map[string]string{"PULL_NUM": "5", "BASE_REPO_OWNER": "acme", "BASE_REPO_NAME": "infra", "WORKSPACE": "default"}, "atlantis:acme/infra:5:default:1700000000", "atlantis"},
	} {
		r := ciRun(func(k string) string { return tc.env[k] }, now)
		if r.Key != tc.key || r.Orchestrator != tc.orch {
			t.Errorf("%v: %q %q", tc.env, r.Key, r.Orchestrator)
		}
		r.Tool = "terraform"
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.Key, err)
		}
	}
	if r := ciRun(func(string) string { return "" }, now); r.Orchestrator != "local" || !strings.HasPrefix(r.Key, "local:") {
		t.Errorf("local run %+v", r)
	}
}
