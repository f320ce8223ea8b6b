// Package correlate ties events to the IaC runs that made them: a registry
// of runs (JetStream KV), the markers a run leaves in each cloud's records,
// and the scoring of DESIGN §5 that links an event to its most likely run,
// with a confidence, a band and the evidence.
package correlate

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Run is one IaC run.
type Run struct {
	Key          string     `json:"run_key"`
	Tool         string     `json:"tool"`         // terraform, opentofu, pulumi, cloudformation, …
	Orchestrator string     `json:"orchestrator"` // github, gitlab, hcp, atlantis, spacelift, env0, local
	Scope        Scope      `json:"scope"`
	Phase        string     `json:"phase,omitempty"` // plan, apply, destroy
	StartedAt    time.Time  `json:"started_at"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	Status       string     `json:"status,omitempty"` // running, succeeded, failed, canceled
	Actor        string     `json:"actor,omitempty"`
	Commit       string     `json:"commit,omitempty"`
	// Identities the run acts as: role ARNs, service account emails,
	// Azure app ids, federated subjects.
	Identities []string `json:"identities,omitempty"`
	// Markers are extra exact strings that identify the run in records
	// (an HCP Terraform session name, say); the run's own token is always
	// one.
	Markers Markers `json:"markers,omitempty"`
	// Plan and Applied come from the run's plan and apply log.
	Plan    []Change  `json:"plan,omitempty"`
	Applied []Applied `json:"applied,omitempty"`
}

// Scope is where the run's code lives.
type Scope struct {
	Repo      string `json:"repo,omitempty"`
	Workspace string `json:"workspace,omitempty"`
	Directory string `json:"directory,omitempty"`
}

var (
	keyRE   = regexp.MustCompile(`^[\w.:/@+=-]{1,200}$`)
	toolRE  = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)
	orchSet = map[string]bool{"github": true, "gitlab": true, "hcp": true, "atlantis": true, "spacelift": true, "env0": true, "local": true, "other": true}
)

// FieldError names the field of a request body that is wrong.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks a run as a client registers it; it returns the first
// problem, naming its field.
func (r *Run) Validate() error {
	switch {
	case !keyRE.MatchString(r.Key):
		return &FieldError{"run_key", "1 to 200 letters, digits and . : / @ + = - _"}
	case !toolRE.MatchString(r.Tool):
		return &FieldError{"tool", "a lower-case tool name (terraform, opentofu, pulumi, …)"}
	case !orchSet[r.Orchestrator]:
		return &FieldError{"orchestrator", "one of github, gitlab, hcp, atlantis, spacelift, env0, local, other"}
	case r.StartedAt.IsZero():
		return &FieldError{"started_at", "required, RFC 3339"}
	case len(r.Identities) > 50:
		return &FieldError{"identities", "at most 50"}
	case len(r.Markers) > 20:
		return &FieldError{"markers", "at most 20"}
	}
	for i, m := range r.Markers {
		if len(m) < 8 || len(m) > 128 {
			return &FieldError{fmt.Sprintf("markers[%d]", i), "8 to 128 characters: shorter ones would match by chance"}
		}
	}
	return nil
}

// Token is the run's marker: "tk" and 16 base32 characters of the key's
// SHA-256. It is valid in every channel a marker travels in: a user-agent
// product token (no ':', '/' or spaces), an AWS role session name or
// source identity ([\w+=,.@-], up to 64), a GCP request reason.
func Token(runKey string) string {
	sum := sha256.Sum256([]byte(runKey))
	return "tk" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
}

// tokenRE finds tokens in a record.
var tokenRE = regexp.MustCompile(`tk[a-z2-7]{16}`)

// namespace of the run's Azure correlation ids (UUIDv5).
var namespace = [16]byte{0x6f, 0x3a, 0x1c, 0x52, 0x8e, 0x0b, 0x4d, 0x21, 0x9a, 0x77, 0x45, 0x10, 0xc3, 0x2e, 0x5b, 0x01}

// AzureCorrelationID is the UUIDv5 of the run key that ARM_CORRELATION_REQUEST_ID
// carries into the Activity Log's correlationId.
func AzureCorrelationID(runKey string) string {
	h := sha1.New()
	h.Write(namespace[:])
	h.Write([]byte(runKey))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Environment is what `trailkeeper exec` sets for a run's command.
func Environment(runKey string) map[string]string {
	tok := Token(runKey)
	return map[string]string{
		"TF_APPEND_USER_AGENT":         "trailkeeper-run/" + tok,
		"CLOUDSDK_CORE_REQUEST_REASON": "trailkeeper-run/" + tok,
		"ARM_CORRELATION_REQUEST_ID":   AzureCorrelationID(runKey),
		"TRAILKEEPER_RUN_TOKEN":        tok,
	}
}

// window is when a run could have made calls: its start, minus skew, to
// its end (or now) plus delivery delay.
func (r *Run) window(now time.Time) (time.Time, time.Time) {
	end := now
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	return r.StartedAt.Add(-2 * time.Minute), end.Add(5 * time.Minute)
}

// Markers are a run's extra exact strings. In a request they are a list,
// or an object naming each kind (a string or a list of strings per kind),
// as CI systems write them.
type Markers []string

// markerKinds are the kinds an object of markers may name.
var markerKinds = map[string]bool{"user_agent_token": true, "session_name": true, "source_identity": true, "request_reason": true, "azure_correlation_id": true}

// UnmarshalJSON implements json.Unmarshaler.
func (m *Markers) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*m = list
		return nil
	}
	var byKind map[string]json.RawMessage
	if err := json.Unmarshal(b, &byKind); err != nil {
		return &FieldError{"markers", "a list of strings, or an object naming each kind (user_agent_token, session_name, source_identity, request_reason, azure_correlation_id)"}
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds) // a stable order, whatever the object's
	out := Markers{}
	for _, k := range kinds {
		if !markerKinds[k] {
			return &FieldError{"markers." + k, "unknown kind: user_agent_token, session_name, source_identity, request_reason or azure_correlation_id"}
		}
		var one string
		if json.Unmarshal(byKind[k], &one) == nil {
			out = append(out, one)
			continue
		}
		var many []string
		if err := json.Unmarshal(byKind[k], &many); err != nil {
			return &FieldError{"markers." + k, "a string or a list of strings"}
		}
		out = append(out, many...)
	}
	*m = out
	return nil
}

// finishStatus maps the words CI systems and IaC tools use for how a run
// ended (Terraform, HCP Terraform, GitLab, GitHub Actions) to ours.
var finishStatus = map[string]string{
	"succeeded": "succeeded", "success": "succeeded", "successful": "succeeded", "passed": "succeeded", "completed": "succeeded",
	"applied": "succeeded", "planned_and_finished": "succeeded", "neutral": "succeeded",
	"failed": "failed", "failure": "failed", "errored": "failed", "error": "failed", "timed_out": "failed",
	"policy_soft_failed": "failed", "action_required": "failed",
	"canceled": "canceled", "cancelled": "canceled", "force_canceled": "canceled", "discarded": "canceled",
	"skipped": "canceled", "stale": "canceled", "manual": "canceled",
}

// FinishStatus returns our status (succeeded, failed or canceled) for a
// CI system's or tool's word, case and spacing aside.
func FinishStatus(word string) (string, bool) {
	s, ok := finishStatus[strings.ReplaceAll(strings.ToLower(strings.TrimSpace(word)), " ", "_")]
	return s, ok
}
