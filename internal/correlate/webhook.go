package correlate

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// hcpNotification is an HCP Terraform / Terraform Enterprise run
// notification (its fields that a run needs).
type hcpNotification struct {
	RunID         string `json:"run_id"`
	RunURL        string `json:"run_url"`
	RunCreatedBy  string `json:"run_created_by"`
	WorkspaceName string `json:"workspace_name"`
	Organization  string `json:"organization_name"`
	Notifications []struct {
		Trigger      string    `json:"trigger"`
		RunStatus    string    `json:"run_status"`
		RunUpdatedAt time.Time `json:"run_updated_at"`
	} `json:"notifications"`
}

// HCPWebhook receives HCP Terraform run notifications, verified with
// HMAC-SHA512 of the body under secret (X-TFE-Notification-Signature): a
// missing or wrong signature is 401. A run is opened by its first
// notification and closed by run:completed or run:errored; its marker is
// the session name HCP Terraform's dynamic credentials use,
// terraform-<run id>.
func HCPWebhook(reg *Registry, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			fail(w, http.StatusRequestEntityTooLarge, err)
			return
		}
		mac := hmac.New(sha512.New, []byte(secret))
		mac.Write(body)
		got, err := hex.DecodeString(r.Header.Get("X-TFE-Notification-Signature"))
		if err != nil || secret == "" || !hmac.Equal(got, mac.Sum(nil)) {
			fail(w, http.StatusUnauthorized, errors.New("missing or wrong X-TFE-Notification-Signature"))
			return
		}
		var n hcpNotification
		if err := json.Unmarshal(body, &n); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		if n.RunID == "" || n.WorkspaceName == "" {
			// HCP sends a verification notification with no run when a
			// notification configuration is saved.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		key := "hcp:" + n.WorkspaceName + ":" + n.RunID
		run, ok := reg.Get(key)
		if !ok {
			run = Run{Key: key, Tool: "terraform", Orchestrator: "hcp", Actor: n.RunCreatedBy, Status: "running",
				Scope: Scope{Workspace: n.WorkspaceName, Repo: n.Organization}, Markers: HCPMarkers(n.RunID)}
		}
		for _, note := range n.Notifications {
			if run.StartedAt.IsZero() || note.RunUpdatedAt.Before(run.StartedAt) {
				run.StartedAt = note.RunUpdatedAt
			}
			switch note.Trigger {
			case "run:completed", "run:errored":
				at := note.RunUpdatedAt
				run.FinishedAt, run.Status = &at, map[bool]string{true: "succeeded", false: "failed"}[note.Trigger == "run:completed"]
			}
		}
		if err := run.Validate(); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		if err := reg.Put(r.Context(), run); err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// HCPMarkers are the AWS session names a run of HCP Terraform's dynamic
// credentials can have: terraform-run-<run id>, where the run id itself
// begins with "run-" ("terraform-run-run-…"), and the same without the
// doubled prefix ("terraform-run-…"); both spellings are accepted.
func HCPMarkers(runID string) []string {
	if runID == "" {
		return nil
	}
	return []string{"terraform-run-" + runID, "terraform-" + runID}
}
