package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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

// SetState replaces a workspace's managed ids (stored in the KV bucket).
func (r *Registry) SetState(ctx context.Context, workspace string, ids []string) error {
	b, _ := json.Marshal(ids)
	if _, err := r.kv.Put(ctx, "state."+Token(workspace), append([]byte(workspace+"\n"), b...)); err != nil {
		return fmt.Errorf("store state of %s: %w", workspace, err)
	}
	r.indexState(workspace, ids)
	return nil
}

func (r *Registry) indexState(workspace string, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ws := range r.managed {
		if ws == workspace {
			delete(r.managed, id)
		}
	}
	for _, id := range ids {
		r.managed[strings.ToLower(id)] = workspace
	}
}

// stateIDs extracts resource ids from `terraform show -json` of a state:
// every resource's id, arn, self_link and Azure id, through child modules.
func stateIDs(b []byte) ([]string, error) {
	var st struct {
		Values struct {
			RootModule module `json:"root_module"`
		} `json:"values"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	var ids []string
	var walk func(m module)
	walk = func(m module) {
		for _, res := range m.Resources {
			for _, k := range []string{"arn", "id", "self_link", "name"} {
				if v, ok := res.Values[k].(string); ok && v != "" && (k != "name" || strings.Contains(v, "/")) {
					ids = append(ids, v)
				}
			}
		}
		for _, c := range m.ChildModules {
			walk(c)
		}
	}
	walk(st.Values.RootModule)
	return ids, nil
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
		ids, err := stateIDs(body)
		if err != nil {
			fail(w, http.StatusBadRequest, &FieldError{"values", "not `terraform show -json` of a state: " + err.Error()})
			return
		}
		if err := reg.SetState(r.Context(), ws, ids); err != nil {
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, map[string]any{"workspace": ws, "resources": len(ids)})
	}
}
