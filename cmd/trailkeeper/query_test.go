package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/internal/httpapi/httpapitest"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
)

// The on-call commands against a served corpus: readable tables by
// default, the API's JSON with --json, errors that name the parameter.
func TestQueryCommands(t *testing.T) {
	const n = 1500
	env := httpapitest.Start(t, n, "query-commands-token")
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := command(t, binary, append(args, "--server", env.URL)...)
		cmd.Env = append(os.Environ(), "TRAILKEEPER_API_TOKEN="+env.Token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	c := indextest.At(40, n) // a run's change (every tenth is)
	out, err := run("who-changed", c.Resource)
	if err != nil {
		t.Fatalf("who-changed: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "TIME (UTC)") || !strings.Contains(out, c.Actor) || !strings.Contains(out, c.RunKey) {
		t.Errorf("who-changed table:\n%s", out)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, c.Resource) {
			t.Errorf("a row about another resource: %s", l)
		}
	}

	out, err = run("who-changed", c.Resource, "--json", "--reads")
	var page index.Page[index.Change]
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Items) == 0 {
		t.Fatalf("who-changed --json: %v\n%s", err, out)
	}

	out, err = run("timeline", "--run", env.RunKey)
	if err != nil || !strings.Contains(out, "Run "+env.RunKey+": terraform via github") || !strings.Contains(out, "OUT-OF-PLAN") ||
		!strings.Contains(out, "aws_instance.never") || !strings.Contains(out, "NOT SEEN") {
		t.Errorf("timeline: %v\n%s", err, out)
	}
	out, err = run("timeline", "--run", env.RunKey, "--json")
	var view httpapi.RunView
	if err != nil || json.Unmarshal([]byte(out), &view) != nil || view.Run == nil {
		t.Errorf("timeline --json: %v\n%s", err, out)
	}

	out, err = run("drift", "--since", "2026-11-01")
	if err != nil || !strings.Contains(out, "CLICKOPS") || !strings.Contains(out, "OUT_OF_PLAN") {
		t.Errorf("drift: %v\n%s", err, out)
	}

	out, err = run("show", c.UID)
	if err != nil || !strings.Contains(out, "leaf ") || !strings.Contains(out, `"uid": "`+c.UID+`"`) {
		t.Errorf("show: %v\n%s", err, out)
	}
	// show --json carries a proof that verify checks offline.
	out, err = run("show", c.UID, "--json")
	if err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	dir := t.TempDir()
	proof, key := filepath.Join(dir, "p.json"), filepath.Join(dir, "k.pub")
	os.WriteFile(proof, []byte(out), 0o600)
	os.WriteFile(key, []byte(env.VerifierKey), 0o600)
	if vout, err := command(t, binary, "verify", "--proof", proof, "--key", key).CombinedOutput(); err != nil || !strings.Contains(string(vout), "proof holds") {
		t.Errorf("verify --proof of show --json: %v\n%s", err, vout)
	}

	if out, err = run("who-changed", "x", "--since", "yesterday"); err == nil || !strings.Contains(out, "since:") {
		t.Errorf("a bad --since: %v\n%s", err, out)
	}
	if out, err = run("show", "nope"); err == nil || !strings.Contains(out, "not in the index") {
		t.Errorf("an unknown uid: %v\n%s", err, out)
	}
	cmd := command(t, binary, "drift", "--server", env.URL, "--token", "wrong")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "bearer token") {
		t.Errorf("a wrong token: %v\n%s", err, out)
	}
}
