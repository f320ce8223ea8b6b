package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
	"github.com/trailkeeper/trailkeeper/internal/embednats"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/fleet/fleettest"
)

// Two daemon processes share six CloudTrail streams; one is frozen with
// SIGSTOP while it holds its share, for three lease TTLs, then thawed. The
// other takes its streams over; the thawed one polls none of them again
// before it gets them back, writes no stale cursor, and every event is on
// the stream once.
func TestFleetProcessFrozenPastItsLease(t *testing.T) {
	srv, _, _ := embednatstest.StartWith(t, embednats.Settings{Port: -1})
	fake := awsfake.New()
	t.Cleanup(fake.Close)
	accounts, regions := []string{"111111111111", "222222222222"}, []string{"us-east-1", "eu-west-1", "ap-south-1"}
	trail := fleettest.StartTrail(fake, accounts, regions, 30, 200*time.Millisecond)
	defer trail.Stop()

	const ttl = 3 * time.Second
	work := t.TempDir()
	type proc struct {
		cmd  *exec.Cmd
		http string
		logs *syncBuffer
	}
	start := func(name string) *proc {
		p := &proc{http: fmt.Sprintf("127.0.0.1:%d", freePort(t)), logs: &syncBuffer{}}
		cfg := filepath.Join(work, name+".yaml")
		os.WriteFile(cfg, fmt.Appendf(nil, `
data_dir: %s
log: {level: warn}
nats: {url: '%s', sync_interval: 0s}
http: {listen: '%s'}
pipeline: {retry_initial: 100ms, retry_max: 1s, shutdown_timeout: 5s}
fleet: {enabled: true, name: %s, lease_ttl: %s}
index: {disabled: true}
sources:
  - name: aws
    type: cloudtrail_api
    endpoint_url: %s
    accounts: [%s]
    role_arn: 'arn:aws:iam::{account}:role/reader'
    session_name: tk-%s
    regions: [%s]
    backfill: 2h
    lag: 0s
    overlap: 1m
    poll_interval: 300ms
`, filepath.Join(work, name), srv.ClientURL(), p.http, name, ttl, fake.URL, strings.Join(accounts, ", "), name, strings.Join(regions, ", ")), 0o600)
		p.cmd = command(t, binary, "run", "--config", cfg)
		p.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=fleet", "AWS_SECRET_ACCESS_KEY=fleet", "AWS_REGION=us-east-1")
		p.cmd.Stderr = p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
			if t.Failed() {
				t.Logf("%s's log:\n%s", name, p.logs.String())
			}
		})
		return p
	}
	holders := func(from *proc, members ...string) map[string]int {
		t.Helper()
		per, _ := fleettest.WaitSettled(t, from.http, 6, members...)
		return per
	}

	a, b := start("a"), start("b")
	if per := holders(a, "a", "b"); per["a"] != 3 || per["b"] != 3 {
		t.Fatalf("shares %v, want 3 each", per)
	}

	// Watch every cursor write from here on.
	nc, js := connect(t, srv.ClientURL())
	defer nc.Close()
	kv, err := js.KeyValue(context.Background(), "trailkeeper-cursors")
	if err != nil {
		t.Fatal(err)
	}
	cw := fleettest.WatchCursors(t, kv)

	time.Sleep(ttl)
	frozen := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	holders(b, "b")
	t.Logf("b holds every stream %s after a was frozen (TTL %s)", time.Since(frozen).Round(time.Millisecond), ttl)
	time.Sleep(3*ttl - time.Since(frozen))
	thawed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	per := holders(b, "a", "b")
	t.Logf("a back with %d streams %s after it was thawed", per["a"], time.Since(thawed).Round(time.Millisecond))

	time.Sleep(ttl)
	trail.Stop()
	want := trail.Events()
	deadline := time.Now().Add(30 * time.Second)
	for streamMsgs(js) < want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if got := streamMsgs(js); got != want {
		t.Errorf("the stream holds %d messages for %d events", got, want)
	}
	n, writes := cw.Check(t)
	if n != 6 {
		t.Errorf("%d cursors written, want 6", n)
	}
	// At the fake: no stream polled by both at once, and the frozen one
	// made no call while frozen.
	fleettest.CheckPolledOnce(t, fake.Requests())
	inFreeze := 0
	for _, r := range fake.Requests() {
		if r.Session == "tk-a" && r.Start.After(frozen.Add(100*time.Millisecond)) && r.Start.Before(thawed) {
			inFreeze++
		}
	}
	if inFreeze > 0 {
		t.Errorf("%d calls from a while it was frozen", inFreeze)
	}
	t.Logf("%d cursor writes on %d cursors, %d calls at the fake", writes, n, len(fake.Requests()))
}
