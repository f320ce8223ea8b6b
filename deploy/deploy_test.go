// Package deploy holds the packaging: the Dockerfile's helpers, the trial
// docker-compose.yml's config, the systemd unit. Its tests check them with
// the tools that read them (docker-compose, systemd-analyze), installed by
// the tests or .ci/run when missing. The release script is tested in
// cmd/trailkeeper, whose tests run the binary it builds.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/trailkeeper/trailkeeper/collectors/registry"
	"github.com/trailkeeper/trailkeeper/config"
)

// tool finds a command, installing its Debian package when missing and
// root (as .ci/run does).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			install := func() ([]byte, error) {
				cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", pkg)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				return cmd.CombinedOutput()
			}
			if _, err := install(); err != nil {
				if out, err := exec.Command("apt-get", "update").CombinedOutput(); err != nil {
					t.Fatalf("apt-get update: %v\n%s", err, out)
				}
				if out, err := install(); err != nil {
					t.Fatalf("apt-get install %s: %v\n%s", pkg, err, out)
				}
			}
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
	}
	t.Fatalf("%s is needed: apt-get install %s (.ci/run installs it)", name, pkg)
	return ""
}

var fromRE = regexp.MustCompile(`(?m)^FROM\s+(\S+)`)

// The images run as a non-root user, build a static binary, pin every
// base image and carry a health check.
func TestDockerfiles(t *testing.T) {
	for _, f := range []string{"../Dockerfile", "compose/go-tool.Dockerfile"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, m := range fromRE.FindAllStringSubmatch(s, -1) {
			img := m[1]
			name := img[strings.LastIndex(img, "/")+1:]
			if !strings.Contains(name, ":") && !strings.Contains(img, "@sha256:") || strings.HasSuffix(img, ":latest") {
				t.Errorf("%s: base image %s is not pinned to a tag", f, img)
			}
		}
		last := s[strings.LastIndex(s, "\nFROM "):]
		user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(last)
		if user == nil || user[1] == "root" || strings.HasPrefix(user[1], "0") {
			t.Errorf("%s: the final stage runs as root (USER %v)", f, user)
		}
		if !strings.Contains(s, "CGO_ENABLED=0") {
			t.Errorf("%s: the binary is not built static (CGO_ENABLED=0)", f)
		}
	}
	b, _ := os.ReadFile("../Dockerfile")
	for _, want := range []string{"HEALTHCHECK", "org.opencontainers.image.version", "VOLUME", "-X main.version="} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

// docker-compose accepts the trial, given only the placeholders of
// .env.example; no secret is written in it.
func TestComposeConfig(t *testing.T) {
	dc := tool(t, "docker-compose", "docker-compose")
	cmd := exec.Command(dc, "--env-file", "../.env.example", "-f", "../docker-compose.yml", "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`(?i)^\s*\w*(KEY|TOKEN|SECRET|PASSWORD)\w*:\s*(\S+)`)
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		if m := secret.FindStringSubmatch(sc.Text()); m != nil && !strings.HasPrefix(m[2], "${") {
			t.Errorf("docker-compose.yml:%d: a literal secret: %s", n, sc.Text())
		}
		if strings.Contains(sc.Text(), "image:") && (strings.HasSuffix(strings.TrimSpace(sc.Text()), ":latest") || !strings.Contains(sc.Text()[strings.Index(sc.Text(), "image:")+6:], ":")) {
			t.Errorf("docker-compose.yml:%d: an image without a pinned tag", n)
		}
	}
}

// The compose trial's trailkeeper config is valid.
func TestComposeTrailkeeperConfig(t *testing.T) {
	b, err := os.ReadFile("compose/trailkeeper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	samples, _ := filepath.Abs("../examples/data")
	file := filepath.Join(t.TempDir(), "trailkeeper.yaml")
	os.WriteFile(file, []byte(strings.ReplaceAll(string(b), "/usr/share/trailkeeper/examples/data", samples)), 0o600)
	t.Setenv("TRAILKEEPER_API_TOKEN", "a-long-enough-api-token")
	t.Setenv("TRAILKEEPER_RUN_TOKEN", "a-long-enough-run-token")
	if _, err := config.Load(file, registry.Default); err != nil {
		t.Errorf("compose/trailkeeper.yaml: %v", err)
	}
}

// systemd accepts the unit, and it keeps its hardening.
func TestSystemdUnit(t *testing.T) {
	sa := tool(t, "systemd-analyze", "systemd")
	b, err := os.ReadFile("systemd/trailkeeper.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=trailkeeper", "NoNewPrivileges=yes", "Restart=on-failure"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	// verify wants ExecStart's binary to exist: point it at one that does.
	bin, _ := exec.LookPath("true")
	unit := filepath.Join(t.TempDir(), "trailkeeper.service")
	os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/trailkeeper", bin)), 0o644)
	if out, err := exec.Command(sa, "verify", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The alerts and the dashboard name only metrics the code registers.
func TestMetricNames(t *testing.T) {
	known := map[string]bool{}
	name := regexp.MustCompile(`"(trailkeeper_[a-z0-9_]+)"`)
	filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			for _, m := range name.FindAllSubmatch(b, -1) {
				known[string(m[1])] = true
			}
		}
		return nil
	})
	used := regexp.MustCompile(`trailkeeper_[a-z0-9_]+`)
	for _, f := range []string{"prometheus/alerts.yaml", "grafana/trailkeeper.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range used.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !known[base] && !known[m] {
				t.Errorf("%s uses %s, which no code registers", f, m)
			}
			n++
		}
		if n < 8 {
			t.Errorf("%s names only %d metrics", f, n)
		}
	}
}
