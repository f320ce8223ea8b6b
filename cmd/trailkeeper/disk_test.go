package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size MiB at a new folder under t's temp
// dir, unmounted when the test ends. It needs root, as CI has.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs to fill it: run it as root (CI does)")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v\n%s", err, out)
		}
	})
	return dir
}

// fill writes zeros to path until the disk is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// The disk under the data dir and the archive fills up mid-ingestion (the
// embedded broker's store too, which switches JetStream off): the daemon
// stops taking pages and says "disk full" in /readyz and a metric, and
// once the space is freed it resumes by itself, without a restart, and
// the stream and the archive end up with every record exactly once.
func TestFullDiskPausesAndResumes(t *testing.T) {
	work := t.TempDir()
	data, want := bulkInput(t, work)
	small := smallDisk(t, 96)
	port, httpPort := freePort(t), freePort(t)
	cfgFile := filepath.Join(work, "trailkeeper.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
data_dir: %s
log: {level: warn}
nats: {embedded: {port: %d}}
http: {listen: '127.0.0.1:%d'}
archive: {dir: %s, segment_bytes: 65536, segment_age: 200ms}
disk: {min_free: 16777216, check_interval: 100ms}
pipeline: {retry_initial: 50ms, retry_max: 500ms}
sources:
  - name: samples
    type: files
    path: %s
    page_size: 25
    poll_interval: 100ms
`, filepath.Join(small, "data"), port, httpPort, filepath.Join(small, "archive"), data)), 0o600)
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon logs:\n%s", tail(logs.String(), 20000))
		}
	})
	cmd := command(t, binary, "run", "--config", cfgFile)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nc, js := connect(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	defer nc.Close()
	deadline := time.Now().Add(60 * time.Second)
	for streamMsgs(js) < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("ingestion did not start; logs:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ballast := filepath.Join(small, "ballast")
	fill(t, ballast)
	atFull := streamMsgs(js)
	if atFull >= uint64(len(want)) {
		t.Fatalf("ingestion ended before the disk filled (%d messages): the test proves nothing", atFull)
	}
	get := func(path string) (int, string) {
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for {
		code, body := get("/readyz")
		if code == 503 && strings.Contains(body, "disk full: "+filepath.Join(small, "data")) {
			t.Logf("readyz: %s", strings.TrimSpace(body))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never said disk full: %d %q\n%s", code, body, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, fmt.Sprintf(`trailkeeper_disk_full{path=%q} 1`, filepath.Join(small, "data"))) {
		t.Errorf("no trailkeeper_disk_full 1 for the data dir in the metrics")
	}
	// Held: a while later, the stream has not grown past the page in
	// flight.
	time.Sleep(time.Second)
	held := streamMsgs(js)
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	t.Logf("disk filled with %d of %d messages in the stream, %d while held; space freed", atFull, len(want), held)
	freed := time.Now()
	waitStream(t, js, len(want), 2*time.Minute, logs.String)
	deadline = time.Now().Add(time.Minute)
	t.Logf("complete %s after the space was freed", time.Since(freed).Round(time.Millisecond))
	for {
		if code, body := get("/readyz"); code == 200 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("not ready again: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	total, _ := checkStreamOnce(t, js, want)
	// While the daemon runs: its archiver catches up at its own pace.
	checkArchive(t, filepath.Join(small, "archive"), filepath.Join(small, "data", "archive.key.pub"), total)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("graceful stop: %v\n%s", err, logs.String())
	}
	t.Logf("the broker hit the full disk and its JetStream was restarted: %v", strings.Contains(logs.String(), "restarted the embedded broker"))
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("logs:\n%s", logs.String())
	}
}
