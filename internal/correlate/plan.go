package correlate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Change is one resource change of a run's plan.
type Change struct {
	Address string   `json:"address"`
	Actions []string `json:"actions"`
	IDs     []string `json:"ids,omitempty"` // ids known before or after (arn, id, self_link)
}

// Applied is one resource's apply window, from `terraform apply -json`.
type Applied struct {
	Address string    `json:"address"`
	ID      string    `json:"id,omitempty"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end,omitzero"`
}

// planChanges reads `terraform show -json` of a plan.
func planChanges(b []byte) ([]Change, error) {
	var p struct {
		ResourceChanges []struct {
			Address string `json:"address"`
			Change  struct {
				Actions []string       `json:"actions"`
				Before  map[string]any `json:"before"`
				After   map[string]any `json:"after"`
			} `json:"change"`
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	var out []Change
	for _, rc := range p.ResourceChanges {
		if len(rc.Change.Actions) == 1 && rc.Change.Actions[0] == "no-op" {
			continue
		}
		c := Change{Address: rc.Address, Actions: rc.Change.Actions}
		for _, vals := range []map[string]any{rc.Change.Before, rc.Change.After} {
			// A create knows no arn or id before apply, but GCP and
			// Azure resources are named by the plan: their ids end in
			// the name (projects/p/…/buckets/NAME, …/providers/…/NAME).
			for _, k := range []string{"arn", "id", "self_link", "name"} {
				if v, ok := vals[k].(string); ok && v != "" && !containsFold(c.IDs, v) {
					c.IDs = append(c.IDs, v)
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// applyWindows reads `terraform apply -json` lines: apply_start and
// apply_complete (or apply_errored) per resource address.
func applyWindows(b []byte) []Applied {
	byAddr := map[string]*Applied{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Timestamp time.Time `json:"@timestamp"`
			Type      string    `json:"type"`
			Hook      struct {
				Resource struct {
					Addr string `json:"addr"`
				} `json:"resource"`
				IDValue string `json:"id_value"`
			} `json:"hook"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Hook.Resource.Addr == "" {
			continue
		}
		a := byAddr[l.Hook.Resource.Addr]
		if a == nil {
			a = &Applied{Address: l.Hook.Resource.Addr}
			byAddr[a.Address] = a
			order = append(order, a.Address)
		}
		switch l.Type {
		case "apply_start":
			a.Start = l.Timestamp
		case "apply_complete", "apply_errored":
			a.End = l.Timestamp
			if l.Hook.IDValue != "" {
				a.ID = l.Hook.IDValue
			}
		}
	}
	out := make([]Applied, 0, len(order))
	for _, addr := range order {
		out = append(out, *byAddr[addr])
	}
	return out
}

// idMatches: an event resource uid names a planned id (the same, or an
// ARN or path ending in it).
func idMatches(uid, id string) bool {
	if uid == "" || id == "" {
		return false
	}
	if strings.EqualFold(uid, id) {
		return true
	}
	u, i := strings.ToLower(uid), strings.ToLower(id)
	return len(i) >= 6 && (strings.HasSuffix(u, "/"+i) || strings.HasSuffix(u, ":"+i))
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// planHandler and applyHandler serve POST /v1/runs/{key}/plan and
// /apply-log.
func runDataHandler(reg *Registry, apply bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		run, ok := reg.Get(r.PathValue("key"))
		if !ok {
			fail(w, http.StatusNotFound, &FieldError{"run_key", "no such run"})
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			return
		}
		if apply {
			run.Applied = applyWindows(body)
		} else if run.Plan, err = planChanges(body); err != nil {
			fail(w, http.StatusBadRequest, &FieldError{"resource_changes", "not `terraform show -json` of a plan: " + err.Error()})
			return
		}
		if err := reg.Put(r.Context(), run); err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, map[string]any{"planned": len(run.Plan), "applied": len(run.Applied)})
	}
}
