package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
	"github.com/trailkeeper/trailkeeper/internal/daemon"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const sampleRecords = 3

func sampleDir(t *testing.T) string {
	dir := t.TempDir()
	var lines string
	for i := range sampleRecords {
		lines += fmt.Sprintf(`{"eventVersion":"1.08","eventID":"e%d","eventTime":"2024-01-01T00:00:00Z","eventSource":"iam.amazonaws.com","eventName":"CreateRole","recipientAccountId":"111122223333"}`+"\n", i)
	}
	lines += "garbage\n" // one dead letter
	p := filepath.Join(dir, "ct.jsonl")
	os.WriteFile(p, []byte(lines), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p, old, old)
	return dir
}

func loadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte(yaml), 0o600)
	cfg, err := config.Load(f, registry.Default)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs the daemon and returns its addresses and a stop function.
func start(t *testing.T, cfg *config.Config) (daemon.Addrs, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan daemon.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, cfg, daemon.Settings{
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Registry: registry.Default,
			OnReady:  func(a daemon.Addrs) { ready <- a },
		})
	}()
	var addrs daemon.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon stopped: %v", err)
	}
	stopped := false
	return addrs, func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}
}

func waitMsgs(t *testing.T, js jetstream.JetStream, want uint64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := js.Stream(ctx, "AUDIT")
		if err == nil {
			info, err := st.Info(ctx)
			if err == nil && info.State.Msgs == want {
				return
			}
			if err == nil && info.State.Msgs > want {
				t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, want)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream never reached %d messages", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEmbeddedEndToEnd(t *testing.T) {
	data := t.TempDir()
	cfg := loadConfig(t, fmt.Sprintf(`
data_dir: %s
nats: {embedded: {port: -1}}
http: {listen: "127.0.0.1:0"}
archive: {dir: %s/archive, segment_age: 100ms}
sources:
  - {name: s, type: files, path: %s, poll_interval: 50ms}
`, data, data, sampleDir(t)))
	addrs, stop := start(t, cfg)
	defer stop()

	// A SIEM connects over TCP to the embedded server.
	nc, err := nats.Connect(addrs.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitMsgs(t, js, sampleRecords+1)
	st, _ := js.Stream(context.Background(), "AUDIT")
	m, err := st.GetLastMsgForSubject(context.Background(), "audit.deadletter.>")
	if err != nil || string(m.Data) != "garbage" {
		t.Errorf("dead letter = %v %v", m, err)
	}
	if _, err := st.GetLastMsgForSubject(context.Background(), "audit.aws.111122223333.iam"); err != nil {
		t.Errorf("event subject: %v", err)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/", "/drift"} {
		resp, err := http.Get("http://" + addrs.HTTP + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	// Progress metrics, read while the archiver and index run (-race).
	deadlineM := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addrs.HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), fmt.Sprintf("trailkeeper_archive_sequence %d", sampleRecords+1)) &&
			strings.Contains(string(b), "trailkeeper_stream_sequence") && strings.Contains(string(b), "trailkeeper_index_sequence") {
			break
		}
		if time.Now().After(deadlineM) {
			t.Fatalf("progress metrics never showed the archive complete:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The on-call index follows the stream: every event, no dead letter.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addrs.HTTP + "/v1/changes?limit=1000")
		if err != nil {
			t.Fatal(err)
		}
		var page struct{ Items []struct{ UID string } }
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) == sampleRecords {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the index holds %d changes, want %d", len(page.Items), sampleRecords)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The cursor lands in the KV bucket.
	kv, err := js.KeyValue(context.Background(), "trailkeeper-cursors")
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := kv.Get(context.Background(), "s"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cursor never saved")
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc.Close()
	stop()

	// Second life on the same data dir: nothing new, nothing twice.
	addrs, stop = start(t, cfg)
	defer stop()
	srvNC, err := nats.Connect(addrs.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer srvNC.Close()
	js2, _ := jetstream.New(srvNC)
	time.Sleep(200 * time.Millisecond) // a few poll intervals
	waitMsgs(t, js2, sampleRecords+1)
}

// writeCerts makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
func writeCerts(t *testing.T, dir string) (ca, srvCert, srvKey, cliCert, cliKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
		return p
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	ca = writePEM("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		kd, _ := x509.MarshalECPrivateKey(k)
		return writePEM(name+".pem", "CERTIFICATE", der), writePEM(name+"-key.pem", "EC PRIVATE KEY", kd)
	}
	srvCert, srvKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return
}

// With nats.url the daemon talks to an existing server (here a real
// nats-server with user/password and mutual TLS), with the same code.
func TestExternalNATS(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, srvKey, cliCert, cliKey := writeCerts(t, dir)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoSystemAccount: true,
		Username: "tk", Password: "s3cret", TLS: true, TLSConfig: tlsCfg, TLSVerify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Setenv("TK_TEST_NATS_PASSWORD", "s3cret")
	cfg := loadConfig(t, fmt.Sprintf(`
data_dir: %s
http: {listen: ""}
nats:
  url: %s
  user: tk
  password: ${env:TK_TEST_NATS_PASSWORD}
  tls: {ca_file: %s, cert_file: %s, key_file: %s}
checkpoint: {store: file}
sources:
  - {name: s, type: files, path: %s, poll_interval: 50ms}
`, t.TempDir(), ns.ClientURL(), ca, cliCert, cliKey, sampleDir(t)))
	addrs, stop := start(t, cfg)
	defer stop()
	if addrs.NATS == "" {
		t.Error("no NATS address reported")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("tk", "s3cret"), nats.RootCAs(ca), nats.ClientCert(cliCert, cliKey))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitMsgs(t, js, sampleRecords+1)

	// Wrong credentials fail start-up with a clear error.
	cfg.NATS.Password = "wrong"
	err = daemon.Run(context.Background(), cfg, daemon.Settings{Logger: slog.New(slog.DiscardHandler), Registry: registry.Default})
	if err == nil {
		t.Error("daemon started with a wrong password")
	}
}
