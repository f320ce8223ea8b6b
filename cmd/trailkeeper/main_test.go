package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
	"github.com/trailkeeper/trailkeeper/internal/pipeline"
	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

var (
	binary string // the release binary the tests run
	dist   string // where scripts/release.sh put it, with SHA256SUMS
)

const testVersion = "v9.9.9-test"

// TestMain builds the real binary once, the way releases are built
// (scripts/release.sh, for this machine's platform only: one non-race
// build of everything for the whole suite), and the tests below run it as
// users do.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trailkeeper-dist")
	if err != nil {
		panic(err)
	}
	dist = dir
	platform := runtime.GOOS + "/" + runtime.GOARCH
	binary = filepath.Join(dist, "trailkeeper-"+testVersion+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	cmd := exec.Command("../../scripts/release.sh", testVersion, platform)
	cmd.Env = append(os.Environ(), "DIST="+dist)
	// The build dies with the test process (a timeout, ^C).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "release.sh: %v\n%s", err, out)
		os.RemoveAll(dist)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dist)
	os.Exit(code)
}

// The release script builds a binary that reports its version and commit,
// and checksums that match: the binary every test here runs.
func TestReleaseScript(t *testing.T) {
	out, err := command(t, binary, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "trailkeeper "+testVersion) || !regexp.MustCompile(`commit [0-9a-f]{40}`).Match(out) {
		t.Errorf("version: %v\n%s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if !strings.Contains(string(sums), hex.EncodeToString(sum[:])+"  "+filepath.Base(binary)) {
		t.Errorf("SHA256SUMS = %s", sums)
	}
}

// command is exec.Command for a process that must not outlive the test
// binary, even when it is killed by a timeout before its cleanups run.
// A process the test started and did not wait for is killed when the test
// ends, failed or not.
func command(t testing.TB, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill() // an error when it has ended already
		}
	})
	return cmd
}

func TestValidateConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("log:\n  level: loud\nstream:\n  replicas: 0\nsources:\n  - name: x\n    type: files\n    path: /nonexistent/folder\n"), 0o600)
	out, err := command(t, binary, "validate-config", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("exit 0 for a bad config:\n%s", out)
	}
	for _, want := range []string{bad + ":2: log.level:", bad + ":4: stream.replicas:", bad + ":8: sources[0].path:", "3 problem(s)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Every example config is valid (secrets they read from the
	// environment given).
	examples, _ := filepath.Glob("../../examples/*.yaml")
	if len(examples) < 4 {
		t.Errorf("examples: %v", examples)
	}
	for _, ex := range examples {
		cmd := command(t, binary, "validate-config", ex)
		cmd.Env = append(os.Environ(), "AZURE_CLIENT_SECRET=example", "TRAILKEEPER_NAME=tk-1", "TRAILKEEPER_NATS_PASSWORD=example",
			"TRAILKEEPER_API_TOKEN=an-example-token-of-length")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", ex, err, out)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := command(t, binary, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OCSF "+normalize.OCSFVersion) {
		t.Errorf("version: %v\n%s", err, out)
	}
}

func TestNormalizeCommand(t *testing.T) {
	cmd := command(t, binary, "normalize", "../../examples/data/aws/exports/plaso-lookup-events.jsonl")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out, []byte("\n")); n != 6 {
		t.Errorf("%d events, want 6 (the last line has no newline)", n)
	}
}

// copyTree copies the bundled sample data.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// expectedIDs is every message id the stream must end up holding for the
// records under dir: event ids, and dead-letter ids for what fails.
func expectedIDs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	cfg := files.NewConfig()
	cfg.Path, cfg.PageSize, cfg.Settle = config.FilePath(dir), 10000, 0
	c := files.New(cfg, collectors.Settings{})
	ids := map[string]bool{}
	var cur []byte
	for {
		page, err := c.Poll(context.Background(), cur)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			if ev, err := normalize.Normalize(r.Raw, r.Format); err == nil && r.Err == nil {
				ids[ev.UID] = true
			} else {
				ids[pipeline.DeadLetterID(r.Raw)] = true
			}
		}
		cur = page.Next
		if !page.More {
			return ids
		}
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func streamMsgs(js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "AUDIT")
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	var nc *nats.Conn
	var err error
	for range 200 {
		if nc, err = nats.Connect(url); err == nil {
			js, _ := jetstream.New(nc)
			return nc, js
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("connect %s: %v", url, err)
	return nil, nil
}

// The daemon is killed with SIGKILL twice in the middle of ingesting and
// archiving the sample data; after a restart the stream holds every record
// exactly once, and the archive verifies and holds every stream message
// exactly once.
func TestKillMidIngestionLosesAndDuplicatesNothing(t *testing.T) {
	work := t.TempDir()
	data, want := bulkInput(t, work)

	port := freePort(t)
	cfgFile := filepath.Join(work, "trailkeeper.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
data_dir: %s
log: {level: warn}
nats: {embedded: {port: %d}}
http: {listen: ""}
archive: {dir: %s, segment_bytes: 65536, segment_age: 200ms}
sources:
  - name: samples
    type: files
    path: %s
    page_size: 25
    poll_interval: 100ms
`, filepath.Join(work, "data"), port, filepath.Join(work, "archive"), data)), 0o600)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	var logs bytes.Buffer
	start := func() *exec.Cmd {
		cmd := command(t, binary, "run", "--config", cfgFile)
		cmd.Stdout, cmd.Stderr = io.Discard, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	began := time.Now()
	first := start()
	nc, js := connect(t, url)
	t.Logf("connected after %s", time.Since(began).Round(time.Millisecond))
	deadline := time.Now().Add(60 * time.Second)
	for streamMsgs(js) < 1000 {
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("ingestion did not start; logs:\n%s", logs.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	nc.Close()
	// Again, a little further on.
	again := start()
	nc, js = connect(t, url)
	from := streamMsgs(js)
	for n := from; n < from+1000 && time.Now().Before(deadline); n = streamMsgs(js) {
		time.Sleep(2 * time.Millisecond)
	}
	atKill := streamMsgs(js)
	again.Process.Signal(syscall.SIGKILL)
	again.Wait()
	nc.Close()
	t.Logf("killed after %s", time.Since(began).Round(time.Millisecond))
	if atKill >= uint64(len(want)) {
		t.Fatalf("the kill came after ingestion ended (%d messages): the test proves nothing", atKill)
	}
	t.Logf("killed with %d of %d messages in the stream", atKill, len(want))
	restarted := time.Now()

	second := start()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			second.Process.Signal(syscall.SIGTERM)
			if err := second.Wait(); err != nil {
				t.Errorf("graceful stop: %v\n%s", err, logs.String())
			}
		}
	}
	defer stop()
	nc, js = connect(t, url)
	defer nc.Close()
	waitStream(t, js, len(want), 2*time.Minute, logs.String)
	t.Logf("complete %s after the restart", time.Since(restarted).Round(time.Millisecond))

	total, events := checkStreamOnce(t, js, want)
	t.Logf("read back after %s", time.Since(restarted).Round(time.Millisecond))
	checkArchive(t, filepath.Join(work, "archive"), filepath.Join(work, "data", "archive.key.pub"), total)

	// The change index was killed twice mid-stream too: once the daemon
	// has caught up and stopped, it holds every event once, and a rebuild
	// from the archive holds the same.
	indexPath := filepath.Join(work, "data", "index.db")
	waitIndexed(t, indexPath, total)
	nc.Close()
	stop()
	followed := indexUIDs(t, indexPath)
	if len(followed) != events {
		t.Errorf("the index holds %d changes, the stream %d events", len(followed), events)
	}
	out, err := command(t, binary, "reindex", "--config", cfgFile, "--from-archive").CombinedOutput()
	if err != nil {
		t.Fatalf("reindex: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if rebuilt := indexUIDs(t, indexPath); !slices.Equal(rebuilt, followed) {
		t.Errorf("reindex from the archive: %d changes, the followed index %d", len(rebuilt), len(followed))
	}
}

// bulkInput is the sample data and, so that a kill or a full disk lands
// mid-way, 20k distinct records in one export, under work/in; want is
// every message id the stream must end up with.
func bulkInput(t *testing.T, work string) (string, map[string]bool) {
	return bulkRecords(t, work, 20000, 20000)
}

// bulkRecords is bulkInput with n generated records, perFile to a file.
func bulkRecords(t *testing.T, work string, n, perFile int) (string, map[string]bool) {
	t.Helper()
	data := filepath.Join(work, "in")
	copyTree(t, "../../examples/data", data)
	for f := 0; f*perFile < n; f++ {
		var bulk bytes.Buffer
		for i := f * perFile; i < min(n, (f+1)*perFile); i++ {
			fmt.Fprintf(&bulk, `{"eventVersion":"1.08","eventID":"bulk-%07d","eventTime":"2024-03-01T%02d:%02d:%02dZ","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","recipientAccountId":"210987654321","awsRegion":"eu-west-1"}`+"\n", i, 10+i/3600%10, i/60%60, i%60)
		}
		name := "bulk.jsonl"
		if f > 0 {
			name = fmt.Sprintf("bulk-%03d.jsonl", f)
		}
		os.WriteFile(filepath.Join(data, name), bulk.Bytes(), 0o644)
	}
	old := time.Now().Add(-time.Hour)
	filepath.Walk(data, func(p string, fi os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	return data, expectedIDs(t, data)
}

// checkStreamOnce reads the whole stream back: every message id of want
// once, and nothing else. It returns the messages and the events (all
// but dead letters) read.
func checkStreamOnce(t *testing.T, js jetstream.JetStream, want map[string]bool) (total uint64, events int) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, "AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	total = streamMsgs(js)
	for read := uint64(0); read < total; {
		batch, err := cons.Fetch(int(min(1000, total-read)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got[m.Headers().Get("Nats-Msg-Id")]++
			read++
			if !strings.HasPrefix(m.Subject(), "audit.deadletter.") {
				events++
			}
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
	for id, n := range got {
		if n > 1 {
			t.Errorf("%s stored %d times", id, n)
		}
		if !want[id] {
			t.Errorf("unexpected id %s", id)
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("lost %s", id)
		}
	}
	if total != uint64(len(want)) {
		t.Errorf("stream holds %d messages, want %d", total, len(want))
	}
	return total, events
}

// waitStream waits until the stream holds n messages, failing t with
// the logs when it stops growing for stuck (slow is no failure: a loaded
// machine sets the pace).
func waitStream(t *testing.T, js jetstream.JetStream, n int, stuck time.Duration, logs func() string) {
	t.Helper()
	last, moved := uint64(0), time.Now()
	for got := streamMsgs(js); got < uint64(n); got = streamMsgs(js) {
		if got > last {
			last, moved = got, time.Now()
		}
		if time.Since(moved) > stuck {
			t.Fatalf("stream stuck at %d of %d messages for %s; logs:\n%s", got, n, stuck, tail(logs(), 12000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitIndexed waits until the index at path has applied seq.
func waitIndexed(t *testing.T, path string, seq uint64) {
	t.Helper()
	ix, err := index.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		last, err := ix.LastSeq(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if last >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the index reached seq %d of %d", last, seq)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// indexUIDs lists an index's changes, oldest first.
func indexUIDs(t *testing.T, path string) []string {
	t.Helper()
	ix, err := index.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	return indextest.UIDs(t, ix, index.Query{Ascending: true, Limit: 1000})
}

// Records that cannot be mapped are reported on stderr and counted; the
// exit status says only whether input could be read.
func TestNormalizeCommandReportsAndExits(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mixed.jsonl")
	os.WriteFile(in, []byte(`{"eventVersion":"1.08","eventName":"A","eventSource":"s3.amazonaws.com","eventTime":"2024-01-01T00:00:00Z","eventID":"x"}`+"\nnot json\n"), 0o600)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"Records":[{"eventVersion":"1.08","eventName":"B","eventSource":"s3.amazonaws.com","eventTime":"2024-01-01T00:00:00Z","eventID":"y"}]}`))
	zw.Close()
	gzFile := filepath.Join(dir, "trail.json.gz")
	os.WriteFile(gzFile, gz.Bytes(), 0o600)

	cmd := command(t, binary, "normalize", in, gzFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("exit %v with unmappable records; stderr:\n%s", err, stderr.String())
	}
	if n := bytes.Count(stdout.Bytes(), []byte("\n")); n != 2 {
		t.Errorf("%d events, want 2 (one from the gzipped trail file)", n)
	}
	if !strings.Contains(stderr.String(), in+":2:") || !strings.Contains(stderr.String(), "2 events, 1 records not mapped") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	if err := command(t, binary, "normalize", filepath.Join(dir, "missing.json")).Run(); err == nil {
		t.Error("exit 0 for input that cannot be read")
	}
	if err := command(t, binary, "normalize", "--format", "xml", in).Run(); err == nil {
		t.Error("exit 0 for an unknown format")
	}
}

// checkArchive waits for the archive to hold total messages, then checks it
// with the verify command and reads every leaf back.
func checkArchive(t *testing.T, dir, pubKey string, total uint64) {
	t.Helper()
	ctx := context.Background()
	st := worm.DirStore{Root: dir}
	vkey, err := os.ReadFile(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := worm.ParseVerifier(string(vkey))
	if err != nil {
		t.Fatal(err)
	}
	// The archive catches up at the machine's pace: the test fails when
	// it stops moving, not when it is slow (a loaded 2-core machine under
	// -race archives a backlog of 20k leaves in seconds or in minutes).
	var last int64 = -1
	moved := time.Now()
	for {
		r, err := worm.Verify(ctx, st, worm.VerifyOptions{Verifier: ver})
		if err == nil && r.Leaves >= int64(total) && r.TreeSize == r.Leaves {
			break
		}
		if r.Leaves > last {
			last, moved = r.Leaves, time.Now()
		}
		if time.Since(moved) > time.Minute {
			t.Fatalf("archive stuck at %d of %d messages for a minute (%v)", r.Leaves, total, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := command(t, binary, "verify", "--archive", dir, "--key", pubKey).CombinedOutput()
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	t.Logf("verify: %s", bytes.TrimSpace(out))
	seqs := map[uint64]int{}
	var uid string
	err = worm.ReadLeaves(ctx, st, func(l worm.Leaf) error {
		seqs[l.Seq]++
		if uid == "" && strings.HasPrefix(l.MsgID, "aws:") {
			uid = l.MsgID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(seqs)) != total {
		t.Errorf("archive holds %d distinct stream messages, the stream %d", len(seqs), total)
	}
	for seq, n := range seqs {
		if n > 1 {
			t.Errorf("stream message %d archived %d times", seq, n)
		}
	}
	// An inclusion proof, checked alone.
	proof, err := command(t, binary, "prove", "--archive", dir, "--uid", uid).Output()
	if err != nil {
		t.Fatalf("prove: %v", err)
	}
	pf := filepath.Join(t.TempDir(), "proof.json")
	os.WriteFile(pf, proof, 0o644)
	if out, err := command(t, binary, "verify", "--proof", pf, "--key", pubKey).CombinedOutput(); err != nil {
		t.Errorf("verify --proof: %v\n%s", err, out)
	}
}

// Shell completions come from the command tree (cobra).
func TestCompletions(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, err := command(t, binary, "completion", sh).Output()
		if err != nil || !bytes.Contains(out, []byte("trailkeeper")) || len(out) < 1000 {
			t.Errorf("completion %s: %v, %d bytes", sh, err, len(out))
		}
	}
}

// SIGHUP checks the config and says a restart is needed; the daemon runs on.
func TestSIGHUP(t *testing.T) {
	work := t.TempDir()
	cfg := filepath.Join(work, "trailkeeper.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\nnats: {embedded: {port: %d}}\nhttp: {listen: \"\"}\nlog: {level: info}\n", work, freePort(t))), 0o600)
	var logs syncBuffer
	cmd := command(t, binary, "run", "--config", cfg)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	waitLog := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), s); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the logs:\n%s", s, logs.String())
			}
		}
	}
	waitLog("trailkeeper running")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("restart to apply it")
	os.WriteFile(cfg, []byte("stream: {replicas: 9}\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("the running config stays")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Credentials in nats.url appear in no message: not when the broker cannot
// be reached, not in a config report, not in fleet check.
func TestNATSCredentialsNeverPrinted(t *testing.T) {
	const secret = "pw-Zq8xK2vQ"
	work := t.TempDir()
	url := fmt.Sprintf("nats://tk:%s@127.0.0.1:1,nats://%s@127.0.0.1:2", secret, secret)
	cfg := filepath.Join(work, "trailkeeper.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\nnats: {url: '%s'}\nhttp: {listen: \"\"}\ncheckpoint: {store: kv}\n", work, url)), 0o600)
	bad := filepath.Join(work, "bad.yaml")
	os.WriteFile(bad, []byte(fmt.Sprintf("data_dir: %s\nnats: {url: '%s', sync_interval: often}\n", work, url)), 0o600)
	for _, args := range [][]string{{"validate-config", bad}, {"fleet", "check", "-c", cfg}, {"reindex", "--config", cfg}} {
		out, err := command(t, binary, args...).CombinedOutput()
		if err == nil {
			t.Errorf("%v: no error", args)
		}
		if strings.Contains(string(out), secret) {
			t.Errorf("%v printed the password:\n%s", args, out)
		}
	}
	// The daemon waits for a broker that is not up yet, and says which.
	var logs syncBuffer
	run := command(t, binary, "run", "--config", cfg)
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "waiting for it"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no wait for NATS in the logs:\n%s", logs.String())
		}
	}
	run.Process.Signal(syscall.SIGTERM)
	run.Wait()
	if out := logs.String(); strings.Contains(out, secret) || !strings.Contains(out, "tk:xxxxx@127.0.0.1:1") {
		t.Errorf("run: the password printed, or the server not named:\n%s", out)
	}
}
