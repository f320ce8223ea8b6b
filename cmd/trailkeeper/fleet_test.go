package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/internal/fleet"
)

// A stream that differs from the config is reported, not changed; --apply
// changes it.
func TestFleetCheck(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	write := func(maxAge string) {
		os.WriteFile(cfg, []byte("data_dir: data\nnats: {embedded: {port: 0}}\nstream: {max_age: "+maxAge+"}\n"), 0o600)
	}
	run := func(args ...string) (string, error) {
		out, err := command(t, binary, append([]string{"fleet", "check", "-c", cfg}, args...)...).CombinedOutput()
		return string(out), err
	}
	write("0s")
	if out, err := run(); err != nil || !strings.Contains(out, "match the config") {
		t.Fatalf("first check: %v\n%s", err, out)
	}
	write("48h")
	out, err := run()
	if err == nil || !strings.Contains(out, "stream AUDIT differs from the config: max age is 0 (none), the config says 48h0m0s") || !strings.Contains(out, "fleet check --apply") {
		t.Fatalf("a changed max age: %v\n%s", err, out)
	}
	if out, err := run("--apply"); err != nil || !strings.Contains(out, "changed where they differed") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err := run(); err != nil {
		t.Fatalf("after apply: %v\n%s", err, out)
	}
}

func TestFleetTable(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	lag := 42.0
	st := fleet.Status{Time: now,
		Members: []fleet.MemberStatus{{Name: "d1", HTTP: "10.0.0.1:9464", Started: now.Add(-time.Hour), Heartbeat: now.Add(-2 * time.Second), Units: 3, Owns: 2}},
		Units: []fleet.UnitStatus{
			{Key: "aws/111111111111/us-east-1", Source: "aws", Holder: "d1", Assigned: "d1", Since: now.Add(-10 * time.Minute), LagSeconds: &lag, Saved: now.Add(-3 * time.Second)},
			{Key: "aws/111111111111/eu-west-1", Source: "aws", Holder: "d1", Assigned: "d2", Since: now.Add(-time.Minute)},
			{Key: "role/archiver", Source: "archiver", Assigned: "d2"},
		}}
	var b bytes.Buffer
	if err := fleetTable(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"d1      2     3        2s ago     1h0m0s  10.0.0.1:9464",
		"aws/111111111111/us-east-1  aws       d1                 10m0s      42s  3s ago",
		"d1 (moving to d2)",
		"(none; to d2)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
