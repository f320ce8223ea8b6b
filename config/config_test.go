package config_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/collectors/files"
	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
)

func parse(t *testing.T, yaml string) (*config.Config, config.Problems) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "trailkeeper.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, registry.Default)
	if err == nil {
		return cfg, nil
	}
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, want config.Problems: %v", err, err)
	}
	return nil, ps
}

func TestDefaults(t *testing.T) {
	cfg, ps := parse(t, "{}\n")
	if ps != nil {
		t.Fatal(ps)
	}
	if cfg.Stream.DuplicateWindow != 2*time.Hour || cfg.Stream.Name != "AUDIT" {
		t.Errorf("stream defaults = %+v", cfg.Stream)
	}
	if cfg.NATS.URL != "" || cfg.NATS.Embedded.Host != "127.0.0.1" || cfg.NATS.Embedded.Port != 4222 || cfg.NATS.SyncInterval != time.Second {
		t.Errorf("nats defaults = %+v", cfg.NATS)
	}
	if cfg.Checkpoint.Store != "kv" || cfg.HTTP.Listen != "127.0.0.1:9464" {
		t.Errorf("defaults = %+v %+v", cfg.Checkpoint, cfg.HTTP)
	}
}

func TestSourceDecodedOverDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg, ps := parse(t, fmt.Sprintf("sources:\n  - name: s1\n    type: files\n    path: %s\n    page_size: 7\n", dir))
	if ps != nil {
		t.Fatal(ps)
	}
	fc, ok := cfg.Sources[0].Settings.(*files.Config)
	if !ok {
		t.Fatalf("settings are %T", cfg.Sources[0].Settings)
	}
	if string(fc.Path) != dir || fc.PageSize != 7 || fc.PollInterval != 10*time.Second || fc.Settle != 5*time.Second {
		t.Errorf("files config = %+v", fc)
	}
}

// Every kind of problem is reported with its path and line.
func TestProblemsHavePathAndLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		line       int
		path, msg  string
	}{
		{"unknown top-level key", "data_dir: x\nfoo: 1\n", 2, "foo", "unknown key"},
		{"unknown nested key", "nats:\n  embedded:\n    hots: 1.2.3.4\n", 3, "nats.embedded.hots", "unknown key"},
		{"wrong type", "stream:\n  replicas: three\n", 2, "stream.replicas", `expected a whole number, got "three"`},
		{"duration without unit", "stream:\n  duplicate_window: 7200\n", 2, "stream.duplicate_window", "expected a duration"},
		{"mapping for scalar", "log:\n  level:\n    a: b\n", 3, "log.level", "expected a string, got a mapping"},
		{"list expected", "sources: nope\n", 1, "sources", "expected a list"},
		{"bad enum", "log:\n  level: loud\n", 2, "log.level", "must be debug, info, warn or error"},
		{"duplicate key", "log:\n  level: info\n  level: warn\n", 3, "log.level", "duplicate key"},
		{"missing env", "nats:\n  url: nats://x\n  user: u\n  password: ${env:TK_TEST_SURELY_UNSET}\n", 4, "nats.password", "environment variable TK_TEST_SURELY_UNSET is not set"},
		{"unreadable file ref", "nats:\n  url: nats://x\n  token: ${file:does-not-exist}\n", 3, "nats.token", "cannot read ${file:does-not-exist}"},
		{"source without type", "sources:\n  - name: a\n", 2, "sources[0].type", "missing"},
		{"unknown source type", "sources:\n  - name: a\n    type: ftp\n", 3, "sources[0].type", `unknown source type "ftp"`},
		{"unknown source key", "sources:\n  - name: a\n    type: files\n    path: " + dir + "\n    recursive: true\n", 5, "sources[0].recursive", "unknown key"},
		{"source validation", "sources:\n  - name: a\n    type: files\n    path: " + dir + "\n    page_size: 0\n", 5, "sources[0].page_size", "between 1 and 10000"},
		{"source name", "sources:\n  - name: Bad Name\n    type: files\n    path: " + dir + "\n", 2, "sources[0].name", "must be 1-63"},
		{"duplicate source name", "sources:\n  - {name: a, type: files, path: " + dir + "}\n  - {name: a, type: files, path: " + dir + "}\n", 3, "sources[1].name", "already the name of sources[0]"},
		{"embedded-only settings with url", "nats:\n  creds_file: /x\n", 2, "nats.creds_file", "only used with nats.url"},
		{"yaml syntax", "log: [\n", 1, "", "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := parse(t, tc.yaml)
			if len(ps) == 0 {
				t.Fatal("no problem reported")
			}
			for _, p := range ps {
				if p.Path == tc.path && p.Line == tc.line && strings.Contains(p.Msg, tc.msg) {
					if !strings.Contains(p.String(), fmt.Sprintf(":%d: ", tc.line)) {
						t.Errorf("String() = %q lacks the line", p.String())
					}
					return
				}
			}
			t.Errorf("want %s at line %d containing %q; got:\n%v", tc.path, tc.line, tc.msg, ps)
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	_, ps := parse(t, `
bogus: 1
log:
  level: loud
  format: xml
stream:
  replicas: lots
sources:
  - name: a
    type: nope
`)
	// Structural and validation problems come back together.
	want := []string{"bogus", "log.level", "log.format", "stream.replicas", "sources[0].type"}
	for _, w := range want {
		found := false
		for _, p := range ps {
			found = found || p.Path == w
		}
		if !found {
			t.Errorf("missing problem at %s; got:\n%v", w, ps)
		}
	}
	_, ps = parse(t, "log:\n  level: loud\n  format: xml\nstream:\n  replicas: 9\n  duplicate_window: 10s\n")
	if len(ps) != 4 {
		t.Errorf("want 4 validation problems, got %d:\n%v", len(ps), ps)
	}
}

func TestSubstitution(t *testing.T) {
	t.Setenv("TK_TEST_USER", "svc")
	t.Setenv("TK_TEST_PORT", "4333")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(secretFile, []byte("s3cr3t-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, ps := parse(t, fmt.Sprintf(`
nats:
  url: nats://localhost:4222
  user: ${env:TK_TEST_USER}
  password: ${file:%s}
  embedded:
    port: ${env:TK_TEST_PORT}
data_dir: "/var/lib/$${env:literal}"
`, secretFile))
	if ps != nil {
		t.Fatal(ps)
	}
	if cfg.NATS.User != "svc" || cfg.NATS.Password.Value() != "s3cr3t-from-file" || cfg.NATS.Embedded.Port != 4333 {
		t.Errorf("substituted = %q %q %d", cfg.NATS.User, cfg.NATS.Password.Value(), cfg.NATS.Embedded.Port)
	}
	if cfg.DataDir != "/var/lib/${env:literal}" {
		t.Errorf("escape: data_dir = %q", cfg.DataDir)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-very-secret"
	t.Setenv("TK_TEST_SECRET", secret)
	// A substituted value with the wrong type must not be echoed.
	_, ps := parse(t, "stream:\n  replicas: ${env:TK_TEST_SECRET}\n")
	if ps == nil || strings.Contains(ps.Error(), secret) {
		t.Errorf("problem echoes the secret: %v", ps)
	}
	s := config.Secret(secret)
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "pw", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %+v", s, s, s, struct{ P config.Secret }{s}), buf.String()} {
		if strings.Contains(out, secret) {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestRelativePathsFollowTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "exports"), 0o755)
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("data_dir: state\nsources:\n  - {name: a, type: files, path: exports}\n  - {name: b, type: files, path: "+dir+"}\n"), 0o600)
	cfg, err := config.Load(file, registry.Default)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.DataDir) != filepath.Join(dir, "state") {
		t.Errorf("data_dir = %s", cfg.DataDir)
	}
	if p := cfg.Sources[0].Settings.(*files.Config).Path; string(p) != filepath.Join(dir, "exports") {
		t.Errorf("relative source path = %s", p)
	}
	if p := cfg.Sources[1].Settings.(*files.Config).Path; string(p) != dir {
		t.Errorf("absolute source path = %s", p)
	}
}

// The query API shows who changed what: off loopback it needs a token.
func TestQueryAPITokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		bad  string // the path of the expected problem, "" for none
	}{
		{"http: {listen: '127.0.0.1:9464'}\n", ""},
		{"http: {listen: 'localhost:9464'}\n", ""},
		{"http: {listen: '[::1]:9464'}\n", ""},
		{"http: {listen: ':9464'}\n", "http.api_token"},
		{"http: {listen: '0.0.0.0:9464'}\n", "http.api_token"},
		{"http: {listen: '10.0.0.5:9464', api_token: short}\n", "http.api_token"},
		{"http: {listen: '0.0.0.0:9464', api_token: a-long-enough-token}\n", ""},
		{"http: {listen: '0.0.0.0:9464'}\nindex: {disabled: true}\n", ""},
		{"index: {retention: 10m}\n", "index.retention"},
		{"index: {retention: 9600h, path: idx/changes.db}\n", ""},
	} {
		_, ps := parse(t, tc.yaml)
		var got string
		if len(ps) > 0 {
			got = ps[0].Path
		}
		if got != tc.bad || len(ps) > 1 {
			t.Errorf("%q: problems %v, want one at %q", tc.yaml, ps, tc.bad)
		}
	}
}

func TestFleet(t *testing.T) {
	const cluster = "nats: {url: 'nats://n1:4222,nats://n2:4222'}\nstream: {replicas: 3, placement: {cluster: east, tags: [ssd]}}\n"
	for _, tc := range []struct {
		yaml string
		bad  []string // paths of the expected problems
	}{
		{cluster + "fleet: {enabled: true, name: d1}\n", nil},
		{cluster + "fleet: {enabled: true}\n", nil},
		{"fleet: {enabled: true}\n", []string{"fleet.enabled"}},
		{cluster + "fleet: {enabled: true, name: 'd 1', lease_ttl: 1s, bucket: 'a.b'}\n", []string{"fleet.bucket", "fleet.lease_ttl", "fleet.name"}},
		{cluster + "fleet: {enabled: true}\ncheckpoint: {store: file}\n", []string{"checkpoint.store"}},
		{cluster + "fleet: {enabled: true}\narchive: {dir: arch}\n", []string{"archive.key_file"}},
		{cluster + "fleet: {enabled: true}\narchive: {dir: arch, key_file: k}\n", nil},
		{cluster + "fleet: {name: d1}\ncheckpoint: {store: file}\n", nil}, // not enabled
		{"stream: {placement: {tags: ['']}}\n", []string{"stream.placement.tags[0]"}},
	} {
		cfg, ps := parse(t, tc.yaml)
		var got []string
		for _, p := range ps {
			got = append(got, p.Path)
		}
		if strings.Join(got, " ") != strings.Join(tc.bad, " ") {
			t.Errorf("%q: problems %v, want at %v", tc.yaml, ps, tc.bad)
		}
		if cfg != nil && cfg.Fleet.LeaseTTL != 15*time.Second {
			t.Errorf("%q: lease_ttl %s, want the default 15s", tc.yaml, cfg.Fleet.LeaseTTL)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                      "nats://127.0.0.1:4222",
		"nats://tk:s3cret@a:4222,nats://tk:s3cret@b": "nats://tk:xxxxx@a:4222,nats://tk:xxxxx@b",
		"nats://s3cret@a:4222":                       "nats://xxxxx@a:4222",
		"tls://u:s3cret@a:4222, nats://b:4222":       "tls://u:xxxxx@a:4222,nats://b:4222",
		"nats://u:s3c%zzret@a":                       "xxxxx@a",
		"a:4222":                                     "a:4222",
	} {
		if got := config.RedactURLs(in); got != want || strings.Contains(got, "s3c") {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
