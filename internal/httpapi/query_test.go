package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailkeeper/trailkeeper/internal/httpapi"
	"github.com/trailkeeper/trailkeeper/internal/httpapi/httpapitest"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/internal/index/indextest"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

const n = 2400

func call(t *testing.T, env *httpapitest.Env, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", env.URL+path, nil)
	if env.Token != "" {
		req.Header.Set("Authorization", "Bearer "+env.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %d %s: %v", path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// walk follows every page of a change list.
func walk(t *testing.T, env *httpapitest.Env, path string) []string {
	t.Helper()
	var uids []string
	next := ""
	for {
		p := path
		if next != "" {
			p += "&cursor=" + url.QueryEscape(next)
		}
		var page index.Page[index.Change]
		if code := call(t, env, p, &page); code != 200 {
			t.Fatalf("GET %s: %d", p, code)
		}
		for _, c := range page.Items {
			uids = append(uids, c.UID)
		}
		if page.Next == "" {
			return uids
		}
		next = page.Next
	}
}

func expect(asc bool, keep func(indextest.Change) bool) []string {
	var out []string
	for i := range n {
		if c := indextest.At(i, n); keep(c) {
			out = append(out, c.UID)
		}
	}
	if !asc {
		slices.Reverse(out)
	}
	return out
}

func TestChangesAPI(t *testing.T) {
	env := httpapitest.Start(t, n, "")
	now := httpapitest.Now(n)
	c7 := indextest.At(7, n)
	tests := []struct {
		query string
		asc   bool
		keep  func(indextest.Change) bool
	}{
		{"", false, func(indextest.Change) bool { return true }},
		{"resource=" + url.QueryEscape(c7.Resource), false, func(c indextest.Change) bool { return c.Resource == c7.Resource }},
		{"resource=" + url.QueryEscape("projects/proj-01/"), false, func(c indextest.Change) bool { return strings.HasPrefix(c.Resource, "projects/proj-01/") }},
		{"resource=web-0012", false, func(c indextest.Change) bool { return strings.Contains(c.Name, "web-0012") }},
		{"actor=" + url.QueryEscape(c7.Actor), false, func(c indextest.Change) bool { return c.Actor == c7.Actor }},
		{"order=asc&run=" + url.QueryEscape("gh:org/infra:2"), true, func(c indextest.Change) bool { return c.RunKey == "gh:org/infra:2" }},
		{"cloud=azure&account=" + url.QueryEscape(indextest.At(5, n).Account), false, func(c indextest.Change) bool {
			return c.Cloud == "azure" && c.Account == indextest.At(5, n).Account
		}},
		{"since=" + indextest.Start.Add(2000*time.Second).Format(time.RFC3339) + "&until=" + indextest.Start.Add(2100*time.Second).Format(time.RFC3339), false,
			func(c indextest.Change) bool {
				return !c.Time.Before(indextest.Start.Add(2000*time.Second)) && c.Time.Before(indextest.Start.Add(2100*time.Second))
			}},
		// An age back from the env's clock: the last 300 s of changes (the
		// clock is a day after the last).
		{"since=" + (24*time.Hour + 300*time.Second).String(), false, func(c indextest.Change) bool { return !c.Time.Before(now.Add(-24*time.Hour - 300*time.Second)) }},
		{"mutating=true&outcome=failure", false, func(c indextest.Change) bool { return c.Mutating && c.Failed }},
		{"mutating=false&cloud=gcp", false, func(c indextest.Change) bool { return !c.Mutating && c.Cloud == "gcp" }},
		{"drift=true", false, func(c indextest.Change) bool { return c.Drift != "" }},
		{"link=ambiguous", false, func(c indextest.Change) bool { return c.Band == "ambiguous" }},
		{"order=asc&cloud=aws&mutating=true", true, func(c indextest.Change) bool { return c.Cloud == "aws" && c.Mutating }},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			want := expect(tc.asc, tc.keep)
			if len(want) == 0 {
				t.Fatal("selects nothing")
			}
			got := walk(t, env, "/v1/changes?limit=97&"+tc.query)
			if !slices.Equal(got, want) {
				t.Errorf("got %d changes, want %d", len(got), len(want))
			}
		})
	}
}

func TestBadParameters(t *testing.T) {
	env := httpapitest.Start(t, 30, "")
	for _, tc := range []struct{ path, param string }{
		{"/v1/changes?resourse=x", "resourse"},
		{"/v1/changes?since=yesterday", "since"},
		{"/v1/changes?until=2026-13-01", "until"},
		{"/v1/changes?mutating=maybe", "mutating"},
		{"/v1/changes?drift=2", "drift"},
		{"/v1/changes?limit=0", "limit"},
		{"/v1/changes?limit=5000", "limit"},
		{"/v1/changes?cloud=ibm", "cloud"},
		{"/v1/changes?cursor=zzz", "cursor"},
		{"/v1/changes?link=sure", "link"},
		{"/v1/changes?outcome=meh", "outcome"},
		{"/v1/changes?order=up", "order"},
		{"/v1/drift?since=-1h", "since"},
		{"/v1/drift?run=x", "run"},
		{"/v1/runs/x/changes?limit=x", "limit"},
		{"/v1/events/synthetic:00000001?proof=1", "proof"},
	} {
		var body struct{ Error, Param string }
		if code := call(t, env, tc.path, &body); code != 400 || body.Param != tc.param || body.Error == "" {
			t.Errorf("GET %s = %d %+v, want 400 naming %s", tc.path, code, body, tc.param)
		}
	}
	var body struct{ Error string }
	if code := call(t, env, "/v1/events/nope", &body); code != 404 {
		t.Errorf("unknown event: %d %+v", code, body)
	}
	if code := call(t, env, "/v1/runs/nope/changes", &body); code != 404 {
		t.Errorf("unknown run: %d %+v", code, body)
	}
}

func TestEventAPI(t *testing.T) {
	env := httpapitest.Start(t, 300, "")
	c := indextest.At(42, 300)
	var v httpapi.EventView
	if code := call(t, env, "/v1/events/"+url.PathEscape(c.UID), &v); code != 200 {
		t.Fatalf("status %d", code)
	}
	if v.Source != "stream" || string(v.Event) != string(c.Event().AppendJSON(nil)) {
		t.Errorf("event from %q = %s", v.Source, v.Event)
	}
	if v.Change.UID != c.UID || v.Change.Leaf == nil {
		t.Errorf("change = %+v", v.Change)
	}
	if v.Proof == nil {
		t.Fatalf("no proof: %s", v.ProofError)
	}
	if err := worm.CheckProof(*v.Proof, env.Verifier, ""); err != nil {
		t.Errorf("the proof does not check: %v", err)
	}
}

func TestRunAPI(t *testing.T) {
	env := httpapitest.Start(t, n, "")
	var v httpapi.RunView
	if code := call(t, env, "/v1/runs/"+url.PathEscape(env.RunKey)+"/changes?limit=1000", &v); code != 200 {
		t.Fatalf("status %d", code)
	}
	if v.Run == nil || v.Run.Commit != "0123456789abcdef" {
		t.Errorf("run = %+v", v.Run)
	}
	want := expect(true, func(c indextest.Change) bool { return c.RunKey == env.RunKey })
	var got []string
	for _, c := range v.Changes.Items {
		got = append(got, c.UID)
		planned := slices.Contains(env.Planned, c.Resources[0].UID)
		// Out of plan: by the run's plan now, or by a drift finding.
		found := slices.ContainsFunc(c.Drift, func(d index.DriftRef) bool { return d.Type == "OUT_OF_PLAN" })
		if wantOOP := !planned && c.Mutating && c.Outcome == "success" || found; c.OutOfPlan != wantOOP {
			t.Errorf("%s (%s, planned %v): out_of_plan %v", c.UID, c.Action, planned, c.OutOfPlan)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("run changes: %d, want %d", len(got), len(want))
	}
	applied := 0
	for _, p := range v.Plan {
		if p.Address == "aws_instance.never" && len(p.Applied) > 0 {
			t.Errorf("never applied, but %v", p.Applied)
		}
		if len(p.Applied) > 0 {
			applied++
		}
	}
	if len(v.Plan) != 4 || applied == 0 {
		t.Errorf("plan = %+v", v.Plan)
	}
	for _, d := range v.Drift {
		if d.Time.Before(v.Run.StartedAt) {
			t.Errorf("drift before the run: %+v", d)
		}
	}
}

func TestDriftAPI(t *testing.T) {
	env := httpapitest.Start(t, n, "")
	var page index.Page[index.Drift]
	if code := call(t, env, "/v1/drift?since=2026-11-01T00:30:00Z&type=clickops&limit=1000", &page); code != 200 {
		t.Fatalf("status %d", code)
	}
	var got []string
	for _, d := range page.Items {
		got = append(got, d.UID)
	}
	var want []string
	for i := n - 1; i >= 1800; i-- {
		if c := indextest.At(i, n); c.Drift != "" && c.RunKey == "" {
			want = append(want, c.Drift)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("drift = %v, want %v", got, want)
	}
}

func TestQueryAuth(t *testing.T) {
	const token = "s3cret-s3cret-s3cret"
	env := httpapitest.Start(t, 30, token)
	for _, h := range []string{"", "Bearer nope", "Basic " + token, "Bearer " + token + "x"} {
		req, _ := http.NewRequest("GET", env.URL+"/v1/changes", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: %d", h, resp.StatusCode)
		}
	}
	var page index.Page[index.Change]
	if code := call(t, env, "/v1/changes", &page); code != 200 || len(page.Items) != 30 {
		t.Errorf("with the token: %d, %d changes", code, len(page.Items))
	}
	// The page asks for the token, then keeps it in a cookie.
	resp, err := http.Get(env.URL + "/?q=web")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), `action="/signin"`) {
		t.Errorf("page without the token: %d", resp.StatusCode)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.PostForm(env.URL+"/signin", url.Values{"token": {token}, "next": {"/?q=web"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/?q=web" || len(resp.Cookies()) != 1 || !resp.Cookies()[0].HttpOnly {
		t.Fatalf("sign-in: %d %v", resp.StatusCode, resp.Cookies())
	}
	req, _ := http.NewRequest("GET", env.URL+"/?q=web", nil)
	req.AddCookie(resp.Cookies()[0])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("page with the cookie: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	// After sign-in, only a local path: every form a browser would read
	// as another host goes to / instead.
	for next, want := range map[string]string{
		"/drift?since=7d": "/drift?since=7d", "//evil.example": "/", `/\evil.example`: "/", `/\/evil.example`: "/",
		"/%2F%2Fevil.example": "/", "/%2fevil.example": "/", "/%5Cevil.example": "/", "/%252F%252Fevil.example": "/",
		"/\t/evil.example": "/", " //evil.example": "/", "https://evil.example": "/", "javascript:alert(1)": "/",
		"/x\r\nSet-Cookie: a=b": "/", "": "/",
	} {
		resp, err := noFollow.PostForm(env.URL+"/signin", url.Values{"token": {token}, "next": {next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); resp.StatusCode != 303 || got != want {
			t.Errorf("next %q: %d to %q, want %q", next, resp.StatusCode, got, want)
		}
	}
	resp, err = noFollow.PostForm(env.URL+"/signin", url.Values{"token": {"wrong"}, "next": {"//evil.example"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Errorf("a wrong token signed in: %d", resp.StatusCode)
	}
}

// A time from a user is RFC 3339, a date or an age, or an error; never a
// panic, never a time after now for an age.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2026-11-23", "2026-11-23T10:00:00Z", "90m", "-1h", "1e9d", "9223372036854775807d", "d", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := httpapi.ParseWhen(s, now)
		if err == nil && !strings.Contains(s, "-") && !strings.Contains(s, ":") && w.After(now) {
			t.Errorf("%q is an age, but %v is after now", s, w)
		}
	})
}

// The page's auto search: a run key opens the run, a resource lists its
// changes, anything else is tried as an actor.
func TestAutoSearch(t *testing.T) {
	env := httpapitest.Start(t, 300, "")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := func(q string) (int, string, string) {
		resp, err := noFollow.Get(env.URL + "/?q=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}
	if code, loc, _ := page("gh:org/infra:0"); code != 303 || loc != "/runs/"+url.PathEscape("gh:org/infra:0") {
		t.Errorf("a run key: %d %q", code, loc)
	}
	c := indextest.At(7, 300)
	if code, _, body := page(c.Name); code != 200 || !strings.Contains(body, c.UID) || strings.Contains(body, "No resource matches") {
		t.Errorf("a resource: %d", code)
	}
	actor := indextest.At(2, 300).Actor
	code, _, body := page(actor)
	if code != 200 || !strings.Contains(body, "No resource matches") || strings.Count(body, `class="change `) == 0 {
		t.Errorf("an actor: %d", code)
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, "<td title=") && !strings.Contains(l, actor) {
			t.Errorf("a row by another actor: %s", l)
		}
	}
}
