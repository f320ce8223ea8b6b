package httpapi_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/trailkeeper/trailkeeper/internal/httpapi/httpapitest"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
)

// chromium finds Debian's chromium; when it is missing and we are root,
// it installs it (pinned by Debian's release), as .ci/run does.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			t.Log("installing Debian's chromium (apt-get install chromium)")
			install := func() ([]byte, error) {
				cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "chromium")
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				return cmd.CombinedOutput()
			}
			if _, err := install(); err != nil {
				// A fresh machine may not have the package lists yet.
				if out, err := exec.Command("apt-get", "update").CombinedOutput(); err != nil {
					t.Fatalf("apt-get update: %v\n%s", err, out)
				}
				if out, err := install(); err != nil {
					t.Fatalf("apt-get install chromium: %v\n%s", err, out)
				}
			}
			if p, err := exec.LookPath("chromium"); err == nil {
				return p
			}
		}
	}
	t.Fatal("the browser tests need Debian's chromium: apt-get install chromium (.ci/run installs it), or set CHROMIUM to a Chromium binary")
	return ""
}

// artifacts is where screenshots go: $TRAILKEEPER_ARTIFACTS/browser (CI
// sets it, to keep them), else the test's temporary folder.
func artifacts(t *testing.T) string {
	dir := os.Getenv("TRAILKEEPER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The web page in a real headless Chromium with JavaScript off: sign in,
// list, search a resource, filter, open a run, open an event.
func TestBrowser(t *testing.T) {
	const n = 1500
	const token = "browser-test-token-123"
	bin := chromium(t)
	env := httpapitest.Start(t, n, token)
	shots := artifacts(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelT()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// texts returns the text of every element that sel matches.
	texts := func(sel string) []string {
		t.Helper()
		nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		var out []string
		for _, nd := range nodes {
			text, err := chromedp.Run(ctx, chromedp.Text(chromedp.NodeIDs{nd.NodeID}))
			if err != nil {
				t.Fatalf("%s: %v", sel, err)
			}
			out = append(out, text)
		}
		return out
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}

	// No page script may be needed: run with JavaScript off.
	do("start", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	}))

	// Sign in.
	do("sign-in form", chromedp.Navigate(env.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)))
	shot("0-signin")
	do("sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), token),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.changes`)))

	// The list: newest first, a page of 100, a link to older ones.
	list := texts(`tr.change`)
	shot("1-list")
	if len(list) != 100 || !strings.Contains(list[0], indextest.At(n-1, n).Time.Format("2006-01-02 15:04:05")) {
		t.Fatalf("the list shows %d rows, first %q", len(list), first(list))
	}
	older, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`a[rel=next]`), "href"))
	if err != nil || !strings.Contains(older.Value, "cursor=") {
		t.Errorf("no link to older changes: %q %v", older.Value, err)
	}

	// Search a resource by a fragment of its name.
	target := indextest.At(1040, n) // made by the run with a plan (i 1000…1490)
	frag := target.Name[1:]
	do("search a resource",
		chromedp.SetValue(chromedp.CSS(`header input[name=q]`), frag),
		chromedp.Submit(chromedp.CSS(`header input[name=q]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.changes`)))
	list = texts(`tr.change`)
	shot("2-search")
	if len(list) == 0 {
		t.Fatal("searching a resource found nothing")
	}
	for _, r := range list {
		if !strings.Contains(r, frag) {
			t.Errorf("a row without %q: %q", frag, r)
		}
	}

	// Filter: changes only, drift only.
	do("filter drift",
		chromedp.Navigate(env.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`form.filters`)),
		chromedp.Click(chromedp.CSS(`input[name=drift]`)),
		chromedp.Click(chromedp.CSS(`input[name=mutating]`)),
		chromedp.Click(chromedp.CSS(`form.filters button`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=drift][checked]`)))
	list = texts(`tr.change`)
	shot("3-drift-filter")
	if len(list) == 0 {
		t.Fatal("the drift filter shows nothing")
	}
	for _, r := range list {
		if !strings.Contains(r, "drift:") {
			t.Errorf("a row without drift: %q", r)
		}
	}

	// Open the run from a change's IaC badge.
	do("open the run view",
		chromedp.Navigate(env.URL+"/?by=resource&q="+url.QueryEscape(target.Resource)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uid="`+target.UID+`"] a.badge[href^="/runs/"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-uid="`+target.UID+`"] a.badge[href^="/runs/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.plan`)))
	h1, plan := text(`h1`), texts(`table.plan tbody tr`)
	shot("4-run")
	if !strings.Contains(h1, target.RunKey) {
		t.Errorf("run view heading %q, want %s", h1, target.RunKey)
	}
	if len(plan) != 4 || !strings.Contains(strings.Join(plan, "\n"), "not seen") {
		t.Errorf("planned vs applied: %q", plan)
	}
	if runRows := texts(`table.changes tr.change`); len(runRows) != 50 {
		t.Errorf("the run view lists %d changes, want 50", len(runRows))
	}

	// Open an event: fields, raw record, archive proof.
	do("open an event",
		chromedp.Click(chromedp.CSS(`table.changes tr.change td a[href^="/events/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.ocsf`)))
	proof, raw := text(`p.proof`), text(`pre.raw`)
	shot("5-event")
	if !strings.Contains(proof, "Leaf ") || !strings.Contains(raw, "synthetic") {
		t.Errorf("event view: proof %q, raw %q", proof, raw)
	}
	t.Logf("screenshots in %s", shots)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
