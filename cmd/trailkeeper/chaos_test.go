package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chaosPlan is how much of each failure a chaos run deals out.
type chaosPlan struct {
	records        int // generated, besides the samples
	kills          int // SIGKILLs of the daemon
	brokerRestarts int // graceful broker restarts (SIGTERM)
	brokerKills    int // SIGKILLs of the broker
	fullDisks      int // the daemon's disk filled, then freed
}

var (
	natsServerOnce sync.Once
	natsServerBin  string
	natsServerErr  error
)

// natsServer builds the real nats-server, the version go.mod pins, once,
// with the release script's flags (so the compile is shared with it).
func natsServer(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		natsServerBin = filepath.Join(dist, "nats-server")
		cmd := exec.Command("go", "build", "-trimpath", "-o", natsServerBin, "github.com/nats-io/nats-server/v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServerErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerBin
}

// broker is an external nats-server process on a fixed port, so that the
// daemon reconnects to the same URL after each restart.
type broker struct {
	t    *testing.T
	bin  string
	conf string
	logs *syncBuffer
	cmd  *exec.Cmd
}

// chaosPassword is the broker's password, in the daemon's nats.url: no
// line the daemon logs through reconnects and failures may show it.
const chaosPassword = "pw-Xv93kQz7Lm"

func startBroker(t *testing.T, dir string, port int) *broker {
	conf := filepath.Join(dir, "nats.conf")
	// sync_interval 1s, as the daemon's nats.sync_interval says: a cursor
	// is saved only after the broker has synced what it acknowledged.
	os.WriteFile(conf, []byte(fmt.Sprintf("server_name: chaos\nlisten: 127.0.0.1:%d\nauthorization { user: chaos, password: %q }\njetstream {\n  store_dir: %q\n  sync_interval: 1s\n  max_file_store: 1G\n}\n",
		port, chaosPassword, filepath.Join(dir, "store"))), 0o600)
	b := &broker{t: t, bin: natsServer(t), conf: conf, logs: &syncBuffer{}}
	b.start()
	return b
}

func (b *broker) start() {
	b.cmd = command(b.t, b.bin, "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
}

func (b *broker) stop(sig syscall.Signal) {
	b.cmd.Process.Signal(sig)
	b.cmd.Wait()
}

// The daemon is SIGKILLed at random moments, the external broker is
// restarted gracefully and SIGKILLed, and the daemon's disk fills up and
// is freed, all while it ingests a generated corpus; in the end the stream
// holds every record exactly once, the archive holds every stream message
// exactly once and verifies, and the broker's password, in nats.url, is in
// no line the daemon wrote.
func TestChaos(t *testing.T) {
	plan := chaosForm
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	work := t.TempDir()
	// The corpus is made up front and fed to the watched folder a file of
	// 1000 records at a time, so that ingestion lasts as long as the
	// feeding and every failure, scheduled by how far the feeding got,
	// lands in the middle of it.
	staged, want := bulkRecords(t, work, plan.records, 1000)
	data := filepath.Join(work, "feed")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	var bulkFiles []string
	entries, _ := os.ReadDir(staged)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "bulk") {
			bulkFiles = append(bulkFiles, e.Name())
		} else if err := os.Rename(filepath.Join(staged, e.Name()), filepath.Join(data, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// Slow enough that a daemon restarted by every failure (it waits out
	// its old lease, 3 s) still gets to ingest between them.
	nFailures := plan.kills + plan.brokerRestarts + plan.brokerKills + plan.fullDisks
	interval := max(700*time.Millisecond, time.Duration(nFailures)*2500*time.Millisecond/time.Duration(max(1, len(bulkFiles))))
	var fed atomic.Int64
	feedDone := make(chan struct{})
	stopFeed := make(chan struct{})
	defer close(stopFeed)
	go func() {
		defer close(feedDone)
		for _, f := range bulkFiles {
			select {
			case <-stopFeed:
				return
			case <-time.After(interval):
			}
			if err := os.Rename(filepath.Join(staged, f), filepath.Join(data, f)); err != nil {
				t.Error(err)
				return
			}
			fed.Add(1)
		}
	}()
	disk := work
	if plan.fullDisks > 0 {
		disk = smallDisk(t, 256+plan.records/500)
	}
	port, httpPort := freePort(t), freePort(t)
	b := startBroker(t, work, port)
	defer func() { b.stop(syscall.SIGTERM) }()
	url := fmt.Sprintf("nats://chaos:%s@127.0.0.1:%d", chaosPassword, port)
	cfgFile := filepath.Join(work, "trailkeeper.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
data_dir: %s
log: {level: info}
nats: {url: '%s', sync_interval: 1s}
http: {listen: '127.0.0.1:%d'}
fleet: {lease_ttl: 3s}
archive: {dir: %s, segment_bytes: 262144, segment_age: 300ms}
disk: {min_free: 33554432, check_interval: 100ms}
pipeline: {retry_initial: 50ms, retry_max: 1s}
sources:
  - name: chaos
    type: files
    path: %s
    page_size: 100
    poll_interval: 100ms
`, filepath.Join(disk, "data"), url, httpPort, filepath.Join(disk, "archive"), data)), 0o600)

	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon logs:\n%s\nbroker logs:\n%s", tail(logs.String(), 12000), tail(b.logs.String(), 4000))
		}
	})
	var daemon *exec.Cmd
	startDaemon := func() {
		daemon = command(t, binary, "run", "--config", cfgFile)
		daemon.Stdout, daemon.Stderr = &logs, &logs
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
	}
	startDaemon()
	nc, js := connect(t, url)
	defer func() { nc.Close() }()

	// The failures, shuffled, each after a random stretch of ingestion.
	var events []string
	for range plan.kills {
		events = append(events, "kill")
	}
	for range plan.brokerRestarts {
		events = append(events, "broker-restart")
	}
	for range plan.brokerKills {
		events = append(events, "broker-kill")
	}
	for range plan.fullDisks {
		events = append(events, "full-disk")
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	began := time.Now()
	counts := map[string]int{}
	var atLast uint64
	for i, ev := range events {
		// The i-th failure at a random point of its share of the
		// feeding.
		share := float64(len(bulkFiles)) / float64(len(events)+1)
		target := int64(share*float64(i+1) + rng.Float64()*share/2)
		for fed.Load() < target {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		atLast = streamMsgs(js)
		if fed.Load() >= int64(len(bulkFiles)) {
			t.Errorf("failure %d (%s) came after the last file was fed", i+1, ev)
		}
		switch ev {
		case "kill":
			daemon.Process.Signal(syscall.SIGKILL)
			daemon.Wait()
			startDaemon()
		case "broker-restart", "broker-kill":
			sig := syscall.SIGTERM
			if ev == "broker-kill" {
				sig = syscall.SIGKILL
			}
			b.stop(sig)
			time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
			b.start()
		case "full-disk":
			ballast := filepath.Join(disk, "ballast")
			fill(t, ballast)
			time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
		}
		counts[ev]++
		t.Logf("%3d %-14s at %6d messages, %s in", i+1, ev, atLast, time.Since(began).Round(time.Millisecond))
	}
	<-feedDone
	waitStream(t, js, len(want), 2*time.Minute, logs.String) // the cleanup adds the broker's logs
	t.Logf("stream complete %s after the start: %v", time.Since(began).Round(time.Millisecond), counts)
	total, _ := checkStreamOnce(t, js, want)
	pub := filepath.Join(disk, "data", "archive.key.pub")
	checkArchive(t, filepath.Join(disk, "archive"), pub, total)
	daemon.Process.Signal(syscall.SIGTERM)
	if err := daemon.Wait(); err != nil {
		t.Errorf("graceful stop: %v\n%s", err, tail(logs.String(), 8000))
	}
	for _, bad := range []string{"panic:", "DATA RACE", "fatal error", chaosPassword} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("the daemon's logs have %q:\n%s", bad, tail(logs.String(), 8000))
		}
	}
	t.Logf("%d records, %d failures (%v) in %s on %d CPUs: 0 lost, 0 duplicated in the stream and the archive",
		len(want), len(events), counts, time.Since(began).Round(time.Second), runtime.NumCPU())
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
