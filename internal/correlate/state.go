package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// managed is the index of IaC-managed resource ids, from the state
// snapshots posted to /v1/state: lower-cased ARNs, GCP resource names,
// Azure resource ids and bare ids, each with the workspace managing it.
func (r *Registry) managedBy(uid string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	u := strings.ToLower(uid)
	if ws, ok := r.managed[u]; ok {
		return ws, true
	}
	// arn:…:security-group/sg-1 is managed when sg-1 is.
	if i := strings.LastIndexAny(u, "/:"); i >= 0 {
		if ws, ok := r.managed[u[i+1:]]; ok && len(u[i+1:]) >= 6 {
			return ws, true
		}
	}
	return "", false
}

// State is what a workspace's state snapshot says: every resource id it
// manages, and the ids of each resource address (so that a run's planned
// create, which has no id before apply, is recognised once the state has
// it).
type State struct {
	IDs       []string            `json:"ids"`
	ByAddress map[string][]string `json:"by_address,omitempty"`
}

// SetState replaces a workspace's managed ids (stored in the KV bucket).
func (r *Registry) SetState(ctx context.Context, workspace string, st State) error {
	b, _ := json.Marshal(st)
	if _, err := r.kv.Put(ctx, "state."+Token(workspace), append([]byte(workspace+"\n"), b...)); err != nil {
		return fmt.Errorf("store state of %s: %w", workspace, err)
	}
	r.indexState(workspace, st)
	return nil
}

// decodeState reads a stored state: the object, or the id list that
// earlier versions stored.
func decodeState(b []byte) (State, bool) {
	var st State
	if json.Unmarshal(b, &st) == nil {
		return st, true
	}
	var ids []string
	if json.Unmarshal(b, &ids) == nil {
		return State{IDs: ids}, true
	}
	return State{}, false
}

func (r *Registry) indexState(workspace string, st State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ws := range r.managed {
		if ws == workspace {
			delete(r.managed, id)
		}
	}
	for _, id := range st.IDs {
		r.managed[strings.ToLower(id)] = workspace
	}
	r.byAddress[workspace] = st.ByAddress
	for _, run := range r.runs {
		if run.Scope.Workspace == workspace {
			r.learnIDs(run)
		}
	}
}

// learnIDs gives a run's planned changes the ids its workspace's state
// lists for their addresses: a create has none in the plan. The plan is
// replaced, not edited: runs handed out earlier keep reading the old one.
// The registry's lock is held.
func (r *Registry) learnIDs(run *Run) {
	known := r.byAddress[run.Scope.Workspace]
	if len(known) == 0 || len(run.Plan) == 0 {
		return
	}
	plan := slices.Clone(run.Plan)
	changed := false
	for i, c := range plan {
		for _, id := range known[c.Address] {
			if !containsFold(c.IDs, id) {
				c.IDs = append(slices.Clip(c.IDs), id)
				changed = true
			}
		}
		plan[i] = c
	}
	if changed {
		run.Plan = plan
	}
}

// stateIDs extracts resource ids from `terraform show -json` of a state:
// every resource's id, arn, self_link and Azure id, through child modules.
func stateIDs(b []byte) (State, error) {
	var st struct {
		Values struct {
			RootModule module `json:"root_module"`
		} `json:"values"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, err
	}
	out := State{ByAddress: map[string][]string{}}
	var walk func(m module)
	walk = func(m module) {
		for _, res := range m.Resources {
			for _, k := range []string{"arn", "id", "self_link", "name"} {
				if v, ok := res.Values[k].(string); ok && v != "" && (k != "name" || strings.Contains(v, "/")) {
					out.IDs = append(out.IDs, v)
					if res.Address != "" {
						out.ByAddress[res.Address] = append(out.ByAddress[res.Address], v)
					}
				}
			}
		}
		for _, c := range m.ChildModules {
			walk(c)
		}
	}
	walk(st.Values.RootModule)
	return out, nil
}

type module struct {
	Resources []struct {
		Address string         `json:"address"`
		Values  map[string]any `json:"values"`
	} `json:"resources"`
	ChildModules []module `json:"child_modules"`
}

// stateHandler serves POST /v1/state?workspace=…
func stateHandler(reg *Registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ws := r.URL.Query().Get("workspace")
		if ws == "" || len(ws) > 200 {
			fail(w, http.StatusBadRequest, &FieldError{"workspace", "required, up to 200 characters"})
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			return
		}
		st, err := stateIDs(body)
		if err != nil {
			fail(w, http.StatusBadRequest, &FieldError{"values", "not `terraform show -json` of a state: " + err.Error()})
			return
		}
		if err := reg.SetState(r.Context(), ws, st); err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, map[string]any{"workspace": ws, "resources": len(st.IDs)})
	}
}
