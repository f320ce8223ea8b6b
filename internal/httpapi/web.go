package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/trailkeeper/trailkeeper/internal/index"
)

// The web page is plain server-rendered HTML: the list, filters, links
// and pagination work without JavaScript, and nothing is fetched from
// outside the daemon.
//
//go:embed web/pages.html web/style.css
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"fmtTime": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			return v.UTC().Format("2006-01-02 15:04:05")
		case *time.Time:
			if v != nil {
				return v.UTC().Format("2006-01-02 15:04:05")
			}
		}
		return ""
	},
	"list":    func(s ...string) []string { return s },
	"pathEsc": url.PathEscape,
	"join":    strings.Join,
	"pretty": func(b json.RawMessage) string {
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			return string(b)
		}
		return out.String()
	},
	// raw is the cloud's own record, kept verbatim in raw_data.
	"raw": func(b json.RawMessage) string {
		var e struct {
			Raw string `json:"raw_data"`
		}
		if json.Unmarshal(b, &e) != nil || e.Raw == "" {
			return "(not available)"
		}
		var out bytes.Buffer
		if json.Indent(&out, []byte(e.Raw), "", "  ") != nil {
			return e.Raw
		}
		return out.String()
	},
}).ParseFS(webFS, "web/pages.html"))

// Version is shown in the page footer; cmd sets it.
var Version = "dev"

// page is what every template gets.
type page struct {
	Title   string
	Form    form
	Stats   index.Stats
	Version string
	Error   string
	Notice  string
	NextURL string
	Next    string // sign-in: where to go after

	Changes index.Page[index.Change]
	Key     string
	View    RunView
	Event   *EventView
	Drift   index.Page[index.Drift]
}

// form is the search box and filters as the user sent them.
type form struct {
	Q, By, Cloud, Account, Since string
	Mutating, Failures, Drift    bool
}

func (q *Query) webRoutes() []Route {
	return []Route{
		{"GET /{$}", q.auth(http.HandlerFunc(q.listPage), true)},
		{"GET /runs/{key}", q.auth(http.HandlerFunc(q.runPage), true)},
		{"GET /events/{uid}", q.auth(http.HandlerFunc(q.eventPage), true)},
		{"GET /drift", q.auth(http.HandlerFunc(q.driftPage), true)},
		{"POST /signin", http.HandlerFunc(q.signInPost)},
		{"GET /static/style.css", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=3600")
			http.ServeFileFS(w, r, webFS, "web/style.css")
		})},
	}
}

func (q *Query) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Version = Version
	p.Stats, _ = q.Index.Stats(r.Context())
	if p.Form.By == "" {
		p.Form.By = "auto"
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, p); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (q *Query) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	title := "Not found"
	if status != http.StatusNotFound {
		title = "Something went wrong"
	}
	q.render(w, r, status, "error", page{Title: title, Error: err.Error()})
}

// listPage is the search and the change list.
func (q *Query) listPage(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f := form{Q: strings.TrimSpace(v.Get("q")), By: v.Get("by"), Cloud: v.Get("cloud"), Account: v.Get("account"), Since: v.Get("since"),
		Mutating: v.Get("mutating") == "true", Failures: v.Get("failures") == "true", Drift: v.Get("drift") == "true"}
	if f.By == "" {
		f.By = "auto"
	}
	iq := index.Query{Cloud: f.Cloud, Account: strings.TrimSpace(f.Account), Drift: f.Drift, Cursor: v.Get("cursor"), Limit: 100}
	if f.Mutating {
		t := true
		iq.Mutating = &t
	}
	if f.Failures {
		iq.Outcome = "failure"
	}
	p := page{Title: "Changes", Form: f}
	if f.Since != "" {
		t, err := ParseWhen(f.Since, q.Now())
		if err != nil {
			p.Error = "since: " + err.Error()
			q.render(w, r, http.StatusBadRequest, "list", p)
			return
		}
		iq.Since = t
	}
	ctx := r.Context()
	var found *index.Page[index.Change] // the auto search's resource page, when it is the answer
	var ferr error
	switch by := f.By; {
	case f.Q == "":
	case by == "run" || by == "auto" && q.isRun(ctx, f.Q):
		http.Redirect(w, r, "/runs/"+url.PathEscape(f.Q), http.StatusSeeOther)
		return
	case by == "actor":
		iq.Actor = f.Q
	case by == "resource":
		iq.Resource = f.Q
	default: // auto: a resource, else an actor
		iq.Resource = f.Q
		if first, err := q.Index.Changes(ctx, iq); err != nil || len(first.Items) > 0 || iq.Cursor != "" {
			found, ferr = &first, err
		} else {
			iq.Resource, iq.Actor = "", f.Q
			p.Notice = "No resource matches " + f.Q + "; showing changes by actors that match it."
		}
	}
	if f.Q != "" {
		p.Title = f.Q
	}
	var pg index.Page[index.Change]
	var err error
	if found != nil {
		pg, err = *found, ferr // the auto search's first try is the answer
	} else {
		pg, err = q.Index.Changes(ctx, iq)
	}
	if err != nil {
		p.Error = err.Error()
		q.render(w, r, statusOf(err), "list", p)
		return
	}
	p.Changes = pg
	if pg.Next != "" {
		v.Set("cursor", pg.Next)
		if iq.Actor != "" && f.By == "auto" {
			v.Set("by", "actor")
		}
		p.NextURL = "/?" + v.Encode()
	}
	q.render(w, r, http.StatusOK, "list", p)
}

// isRun: the registry holds the key, or changes name it.
func (q *Query) isRun(ctx context.Context, key string) bool {
	if q.Runs != nil {
		if _, ok := q.Runs.Get(key); ok {
			return true
		}
	}
	pg, err := q.Index.Changes(ctx, index.Query{Run: key, Limit: 1})
	return err == nil && len(pg.Items) > 0
}

func (q *Query) runPage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	cursor := r.URL.Query().Get("cursor")
	v, err := q.Run(r.Context(), key, index.Query{Ascending: true, Limit: 200, Cursor: cursor})
	if err != nil {
		q.pageError(w, r, err)
		return
	}
	p := page{Title: "Run " + key, Key: key, View: v, Form: form{Q: key, By: "run"}}
	if v.Changes.Next != "" {
		p.NextURL = "/runs/" + url.PathEscape(key) + "?cursor=" + url.QueryEscape(v.Changes.Next)
	}
	q.render(w, r, http.StatusOK, "run", p)
}

func (q *Query) eventPage(w http.ResponseWriter, r *http.Request) {
	v, err := q.View(r.Context(), r.PathValue("uid"))
	if err != nil {
		q.pageError(w, r, err)
		return
	}
	q.render(w, r, http.StatusOK, "event", page{Title: v.Change.Action, Event: &v})
}

func (q *Query) driftPage(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	since := v.Get("since")
	if !v.Has("since") {
		since = "7d"
	}
	dq := index.DriftQuery{Cursor: v.Get("cursor"), Limit: 100}
	p := page{Title: "Drift", Form: form{Since: since}}
	if since != "" {
		t, err := ParseWhen(since, q.Now())
		if err != nil {
			p.Error = "since: " + err.Error()
			q.render(w, r, http.StatusBadRequest, "error", p)
			return
		}
		dq.Since = t
	}
	d, err := q.Index.Drift(r.Context(), dq)
	if err != nil {
		q.pageError(w, r, err)
		return
	}
	p.Drift = d
	if d.Next != "" {
		v.Set("cursor", d.Next)
		v.Set("since", since)
		p.NextURL = "/drift?" + v.Encode()
	}
	q.render(w, r, http.StatusOK, "drift", p)
}

// signIn shows the token form (the browser cannot send a bearer token).
func (q *Query) signIn(w http.ResponseWriter, r *http.Request, tried bool) {
	p := page{Title: "Sign in", Next: r.URL.RequestURI()}
	if tried {
		p.Error = "That token is not valid."
	}
	q.render(w, r, http.StatusUnauthorized, "signin", p)
}

func (q *Query) signInPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok, next := r.PostFormValue("token"), r.PostFormValue("next")
	if !localPath(next) {
		next = "/"
	}
	if q.Token == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(q.Token)) != 1 {
		q.signIn(w, r, true)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int((12 * time.Hour).Seconds())})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// localPath: next is a path on this server, safe to redirect to after
// sign-in. Browsers read "//host", "/\host" and their encoded or
// whitespace-padded forms as another host, so anything but a plain
// absolute path is refused.
func localPath(next string) bool {
	if !strings.HasPrefix(next, "/") || len(next) > 2048 {
		return false
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false // control characters, tabs, newlines; backslashes
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return false
	}
	// Decoded, the path must not start a network path either (%2F%2F,
	// %5C, or doubly encoded).
	p := u.Path
	for range 3 {
		if strings.HasPrefix(p, "//") || strings.Contains(p, "\\") {
			return false
		}
		d, err := url.PathUnescape(p)
		if err != nil {
			return false
		}
		if d == p {
			break
		}
		p = d
	}
	return true
}
