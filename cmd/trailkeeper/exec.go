package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailkeeper/trailkeeper/internal/correlate"
)

// exitError carries a child's exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func execCmd() *cobra.Command {
	var runKey, server, token, tool string
	var identities []string
	c := &cobra.Command{
		Use:   "exec [--run-key K] [--server URL] -- COMMAND [ARG…]",
		Short: "Run an IaC command as a registered run: markers in its environment, the run opened and closed around it",
		Long: `Registers the run (its key from the CI environment unless --run-key),
runs COMMAND with the run markers set (TF_APPEND_USER_AGENT,
CLOUDSDK_CORE_REQUEST_REASON, ARM_CORRELATION_REQUEST_ID), passes its output
through unchanged, closes the run with its exit status, and exits with it.
If the server cannot be reached the command still runs: correlation never
blocks a deploy. The token comes from --token or TRAILKEEPER_TOKEN.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				token = os.Getenv("TRAILKEEPER_TOKEN")
			}
			run := ciRun(os.Getenv, time.Now())
			if runKey != "" {
				run.Key = runKey
			}
			run.Tool, run.Identities = tool, identities
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "trailkeeper: run %s; use role-session-name / source_identity %s\n", run.Key, correlate.Token(run.Key))
			api := runAPI{server: strings.TrimSuffix(server, "/"), token: token}
			if err := api.post(cmd.Context(), "/v1/runs", run); err != nil {
				fmt.Fprintf(stderr, "trailkeeper: could not register the run (the command runs anyway): %v\n", err)
			}
			child := exec.CommandContext(cmd.Context(), args[0], args[1:]...)
			// Output passes through unchanged; a copy (bounded) is kept to
			// upload Terraform's JSON plan or apply log.
			captured := &capBuffer{max: correlate.MaxBody}
			child.Stdin, child.Stdout, child.Stderr = os.Stdin, io.MultiWriter(cmd.OutOrStdout(), captured), stderr
			child.Env = runEnv(os.Environ(), correlate.Environment(run.Key))
			err := child.Run()
			status, code := "succeeded", 0
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee):
				status, code = "failed", ee.ExitCode()
			case err != nil:
				status, code = "failed", 127
				fmt.Fprintf(stderr, "trailkeeper: %v\n", err)
			}
			if out := captured.Bytes(); !captured.over {
				var path string
				switch {
				case bytes.Contains(out, []byte(`"type":"apply_start"`)):
					path = "/apply-log"
				case bytes.Contains(out, []byte(`"resource_changes"`)):
					path = "/plan"
				}
				if path != "" {
					if err := api.postRaw(cmd.Context(), "/v1/runs/"+url.PathEscape(run.Key)+path, out); err != nil {
						fmt.Fprintf(stderr, "trailkeeper: could not upload the %s: %v\n", strings.TrimPrefix(path, "/"), err)
					}
				}
			}
			fin := map[string]any{"status": status, "finished_at": time.Now().UTC()}
			if err := api.post(cmd.Context(), "/v1/runs/"+url.PathEscape(run.Key)+"/finish", fin); err != nil {
				fmt.Fprintf(stderr, "trailkeeper: could not close the run: %v\n", err)
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	c.Flags().StringVar(&runKey, "run-key", "", "the run's key (default: from the CI environment)")
	c.Flags().StringVar(&server, "server", "http://127.0.0.1:9464", "the daemon's HTTP address")
	c.Flags().StringVar(&token, "token", "", "the run API token (default $TRAILKEEPER_TOKEN)")
	c.Flags().StringVar(&tool, "tool", "terraform", "terraform, opentofu, pulumi, …")
	c.Flags().StringSliceVar(&identities, "identity", nil, "an identity the run acts as (role ARN, service account, app id); repeatable")
	return c
}

func runTokenCmd() *cobra.Command {
	var runKey string
	c := &cobra.Command{
		Use:   "run-token [--run-key K]",
		Short: "Print the marker token of the run (its key from the CI environment unless --run-key): the AWS role session name or source identity to use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key := runKey
			if key == "" {
				key = ciRun(os.Getenv, time.Now()).Key
			}
			fmt.Fprintln(cmd.OutOrStdout(), correlate.Token(key))
			return nil
		},
	}
	c.Flags().StringVar(&runKey, "run-key", "", "the run's key (default: from the CI environment)")
	return c
}

// runEnv adds the run's markers to env; a user agent already appended to
// is kept, the marker added after it.
func runEnv(env []string, markers map[string]string) []string {
	out := make([]string, 0, len(env)+len(markers))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if m, ok := markers[k]; ok {
			if k == "TF_APPEND_USER_AGENT" && v != "" {
				m = v + " " + m
			}
			kv = k + "=" + m
			delete(markers, k)
		}
		out = append(out, kv)
	}
	for k, v := range markers {
		out = append(out, k+"="+v)
	}
	return out
}

// ciRun describes the run from the CI system's environment.
func ciRun(env func(string) string, now time.Time) correlate.Run {
	r := correlate.Run{StartedAt: now.UTC(), Phase: "apply"}
	switch {
	case env("GITHUB_RUN_ID") != "":
		r.Orchestrator, r.Scope.Repo, r.Commit, r.Actor = "github", env("GITHUB_REPOSITORY"), env("GITHUB_SHA"), env("GITHUB_ACTOR")
		r.Key = fmt.Sprintf("github:%s:%s:%s", env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID"), or(env("GITHUB_RUN_ATTEMPT"), "1"))
	case env("GITLAB_CI") != "":
		r.Orchestrator, r.Scope.Repo, r.Commit, r.Actor = "gitlab", env("CI_PROJECT_PATH"), env("CI_COMMIT_SHA"), env("GITLAB_USER_LOGIN")
		r.Key = fmt.Sprintf("gitlab:%s:%s:%s", env("CI_PROJECT_PATH"), env("CI_PIPELINE_ID"), env("CI_JOB_ID"))
		if env("CI_PROJECT_ID") != "" && env("CI_PIPELINE_ID") != "" {
			// The session name GitLab's AWS OIDC examples use.
			r.Markers = []string{"GitLabRunner-" + env("CI_PROJECT_ID") + "-" + env("CI_PIPELINE_ID")}
		}
	case env("TFC_RUN_ID") != "":
		r.Orchestrator, r.Scope.Workspace = "hcp", env("TFC_WORKSPACE_NAME")
		r.Key = fmt.Sprintf("hcp:%s:%s", env("TFC_WORKSPACE_NAME"), env("TFC_RUN_ID"))
		r.Markers = correlate.HCPMarkers(env("TFC_RUN_ID"))
	case env("ATLANTIS_TERRAFORM_VERSION") != "" || env("PULL_NUM") != "" && env("BASE_REPO_NAME") != "":
		r.Orchestrator, r.Scope.Repo, r.Scope.Workspace, r.Commit = "atlantis", env("BASE_REPO_OWNER")+"/"+env("BASE_REPO_NAME"), env("WORKSPACE"), env("HEAD_COMMIT")
		r.Key = fmt.Sprintf("atlantis:%s:%s:%s:%d", r.Scope.Repo, env("PULL_NUM"), env("WORKSPACE"), now.Unix())
	case env("SPACELIFT_RUN_ID") != "":
		r.Orchestrator, r.Scope.Workspace = "spacelift", env("TF_VAR_spacelift_stack_id")
		r.Key = fmt.Sprintf("spacelift:%s:%s", env("TF_VAR_spacelift_stack_id"), env("SPACELIFT_RUN_ID"))
		r.Markers = []string{env("SPACELIFT_RUN_ID")}
	case env("ENV0_DEPLOYMENT_LOG_ID") != "":
		r.Orchestrator, r.Scope.Workspace = "env0", env("ENV0_ENVIRONMENT_ID")
		r.Key = fmt.Sprintf("env0:%s:%s", env("ENV0_ENVIRONMENT_ID"), env("ENV0_DEPLOYMENT_LOG_ID"))
	default:
		r.Orchestrator = "local"
		who := "unknown"
		if u, err := user.Current(); err == nil {
			who = u.Username
		}
		host, _ := os.Hostname()
		r.Actor = who
		r.Key = fmt.Sprintf("local:%s@%s:%d", who, host, now.Unix())
	}
	if len(r.Markers) > 0 && len(r.Markers[0]) < 8 {
		r.Markers = nil
	}
	return r
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type runAPI struct{ server, token string }

func (a runAPI) post(ctx context.Context, path string, v any) error {
	body, _ := json.Marshal(v)
	return a.postRaw(ctx, path, body)
}

func (a runAPI) postRaw(ctx context.Context, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// capBuffer keeps what is written to it up to max bytes, then only notes
// that there was more.
type capBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.max {
		c.over = true
		return len(p), nil
	}
	return c.Buffer.Write(p)
}
