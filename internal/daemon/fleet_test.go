package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	awsfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/aws"
	"github.com/trailkeeper/trailkeeper/internal/daemon"
	"github.com/trailkeeper/trailkeeper/internal/embednats/embednatstest"
	"github.com/trailkeeper/trailkeeper/internal/fleet/fleettest"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// cutter dials NATS for one daemon and can cut it off for good, the way a
// crash looks from the cluster (no goodbye, no release), or pause its
// traffic and let it flow again, the way a partition or a frozen VM looks.
type cutter struct {
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
	paused chan struct{} // closed when traffic may flow
}

// pausable holds every read and write while its cutter is paused.
type pausable struct {
	net.Conn
	c *cutter
}

func (c *cutter) wait() {
	c.mu.Lock()
	ch := c.paused
	c.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (p pausable) Read(b []byte) (int, error) {
	p.c.wait()
	n, err := p.Conn.Read(b)
	p.c.wait() // what arrived during the pause is seen after it
	return n, err
}

func (p pausable) Write(b []byte) (int, error) {
	p.c.wait()
	return p.Conn.Write(b)
}

func (c *cutter) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = make(chan struct{})
}

func (c *cutter) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.paused)
	c.paused = nil
}

func (c *cutter) Dial(network, address string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("cut off")
	}
	conn, err := net.DialTimeout(network, address, 2*time.Second)
	if err != nil {
		return nil, err
	}
	c.conns = append(c.conns, conn)
	return pausable{Conn: conn, c: c}, nil
}

func (c *cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	if c.paused != nil {
		close(c.paused)
		c.paused = nil
	}
	for _, conn := range c.conns {
		conn.Close()
	}
}

type fleetDaemon struct {
	name   string
	addrs  daemon.Addrs
	cut    *cutter
	cancel context.CancelFunc
	done   chan error
}

var (
	fleetAccounts = []string{"111111111111", "222222222222", "333333333333", "444444444444"}
	fleetRegions  = []string{"us-east-1", "eu-west-1", "ap-south-1"}
)

const fleetTTL = 3 * time.Second

func startFleetDaemon(t *testing.T, name, urls, fakeURL, shared string) *fleetDaemon {
	t.Helper()
	cfg := loadConfig(t, fmt.Sprintf(`
data_dir: %s
log: {level: warn}
nats: {url: '%s', sync_interval: 0s}
stream: {replicas: 3}
http: {listen: '127.0.0.1:0'}
pipeline: {retry_initial: 100ms, retry_max: 1s, shutdown_timeout: 5s}
fleet: {enabled: true, name: %s, lease_ttl: %s}
archive: {dir: %s, key_file: %s, segment_age: 500ms}
sources:
  - name: aws
    type: cloudtrail_api
    endpoint_url: %s
    accounts: [%s]
    role_arn: 'arn:aws:iam::{account}:role/reader'
    session_name: %s
    regions: [%s]
    backfill: 3h
    window: 1h
    lag: 0s
    overlap: 1m
    poll_interval: 300ms
`, filepath.Join(t.TempDir(), name), urls, name, fleetTTL, filepath.Join(shared, "archive"), filepath.Join(shared, "archive.key"),
		fakeURL, strings.Join(fleetAccounts, ", "), name, strings.Join(fleetRegions, ", ")))
	d := &fleetDaemon{name: name, cut: &cutter{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	ready := make(chan daemon.Addrs, 1)
	go func() {
		defer func() {
			if ctx.Err() == nil {
				t.Errorf("%s stopped by itself", name)
			}
		}()
		d.done <- daemon.Run(ctx, cfg, daemon.Settings{
			Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})).With("daemon", name),
			Registry:    registry.Default,
			OnReady:     func(a daemon.Addrs) { ready <- a },
			NATSOptions: []nats.Option{nats.SetCustomDialer(d.cut), nats.ReconnectWait(100 * time.Millisecond)},
		})
	}()
	select {
	case d.addrs = <-ready:
	case err := <-d.done:
		cancel()
		t.Fatalf("%s stopped: %v", name, err)
	}
	t.Cleanup(d.stop)
	return d
}

func (d *fleetDaemon) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	<-d.done
}

// Three daemons on a three-node NATS cluster poll 12 account × region
// streams of the CloudTrail fake. Each stream is polled by one daemon at
// a time (checked at the fake, from the role session each daemon's calls
// are signed with), a daemon cut off has its streams taken over (in 1–2
// TTLs on an idle machine; logged, not asserted), losing a NATS node loses
// nothing (R3), a daemon that joins gets its share, and the stream ends up
// with every event exactly once; the archive, whose archiver moved with
// its role, verifies.
func TestFleetOnCluster(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "fleet")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fleet")
	t.Setenv("AWS_REGION", "us-east-1")
	servers := embednatstest.StartCluster(t, 3)
	urls := embednatstest.URLs(servers)
	fake := awsfake.New(awsfake.WithRegions(fleetRegions...))
	t.Cleanup(fake.Close)

	// History per stream, then new events as the test runs.
	trail := fleettest.StartTrail(fake, fleetAccounts, fleetRegions, 50, 250*time.Millisecond)
	defer trail.Stop()

	shared := t.TempDir()
	if err := os.MkdirAll(filepath.Join(shared, "archive"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, vkey, _, err := worm.LoadOrCreateKey(filepath.Join(shared, "archive.key"))
	if err != nil {
		t.Fatal(err)
	}
	ds := map[string]*fleetDaemon{}
	var wg sync.WaitGroup
	var dmu sync.Mutex
	for _, n := range []string{"d1", "d2", "d3"} {
		wg.Go(func() {
			d := startFleetDaemon(t, n, urls, fake.URL, shared)
			dmu.Lock()
			ds[n] = d
			dmu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	const units = 12 + 1 // streams and the archiver

	// Every cursor write, in order: no daemon may ever write back a cursor
	// that a newer one replaced (a stale save after a takeover).
	wnc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	wjs, _ := jetstream.New(wnc)
	cursors, err := wjs.KeyValue(context.Background(), "trailkeeper-cursors")
	if err != nil {
		t.Fatal(err)
	}
	cw := fleettest.WatchCursors(t, cursors)
	settled := func(what string, from *fleetDaemon, members ...string) (map[string]int, time.Duration) {
		t.Helper()
		t.Log(what)
		return fleettest.WaitSettled(t, from.addrs.HTTP, units, members...)
	}
	per, took := settled("every unit owned once", ds["d1"], "d1", "d2", "d3")
	t.Logf("13 units settled on 3 daemons %s after start", took.Round(time.Millisecond))
	for _, n := range []string{"d1", "d2", "d3"} {
		if per[n] < 4 || per[n] > 5 {
			t.Errorf("%s owns %d units, want 4 or 5: %v", n, per[n], per)
		}
	}

	// d2 dies.
	time.Sleep(fleetTTL)
	ds["d2"].cut.Cut()
	_, took = settled("d2's units taken over", ds["d1"], "d1", "d3")
	t.Logf("d2's %d units taken over %s after it was cut off (TTL %s)", per["d2"], took.Round(time.Millisecond), fleetTTL)

	// d3 is frozen past its lease (its NATS traffic held for 2 TTLs), then
	// thaws: its units were taken over meanwhile, it writes nothing stale,
	// and it rejoins.
	ds["d3"].cut.Pause()
	time.Sleep(2 * fleetTTL)
	ds["d3"].cut.Resume()
	_, took = settled("d3 back after its pause", ds["d1"], "d1", "d3")
	t.Logf("d3 settled again %s after it thawed", took.Round(time.Millisecond))

	// A NATS node dies; the others have every replica.
	servers[0].Shutdown()
	time.Sleep(fleetTTL)

	// d4 joins and takes its share.
	ds["d4"] = startFleetDaemon(t, "d4", embednatstest.URLs(servers[1:]), fake.URL, shared)
	per, took = settled("d4 has its share", ds["d3"], "d1", "d3", "d4")
	t.Logf("d4 had its share %s after it started", took.Round(time.Millisecond))
	if per["d4"] < 4 {
		t.Errorf("d4 owns %d units: %v", per["d4"], per)
	}

	time.Sleep(fleetTTL)
	trail.Stop()

	// Every event exactly once.
	nc, err := nats.Connect(embednatstest.URLs(servers[1:]))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	want := trail.Events()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	var got uint64
	for {
		st, err := js.Stream(ctx, "AUDIT")
		if err == nil {
			info, err := st.Info(ctx, jetstream.WithSubjectFilter("audit.aws.>"))
			if err == nil {
				got = 0
				for _, n := range info.State.Subjects {
					got += n
				}
			}
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // anything extra would show now
	if st, err := js.Stream(ctx, "AUDIT"); err == nil {
		if info, err := st.Info(ctx); err == nil && info.State.Msgs != want {
			t.Errorf("the stream holds %d messages for %d events", info.State.Msgs, want)
		}
	}
	if got != want {
		t.Errorf("%d events on audit.aws.>, want %d", got, want)
	}

	// No stream was polled by two daemons at once, and no cursor went back.
	t.Logf("LookupEvents calls by session: %v", fleettest.CheckPolledOnce(t, fake.Requests()))
	n, writes := cw.Check(t)
	if n != 12 {
		t.Errorf("%d cursors written, want 12", n)
	}
	t.Logf("%d cursor writes on %d cursors, none went back", writes, n)

	// Stop everyone, then check the archive: one log, though its archiver
	// moved.
	for _, d := range ds {
		d.stop()
	}
	v, err := worm.ParseVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := worm.Verify(ctx, worm.DirStore{Root: filepath.Join(shared, "archive")}, worm.VerifyOptions{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Leaves == 0 {
		t.Errorf("archive: %d leaves, findings %v", rep.Leaves, rep.Findings)
	}
	t.Logf("archive: %d leaves in %d segments, verified", rep.Leaves, rep.Segments)
}
