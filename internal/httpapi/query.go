package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trailkeeper/trailkeeper/internal/correlate"
	"github.com/trailkeeper/trailkeeper/internal/index"
	"github.com/trailkeeper/trailkeeper/sink/worm"
)

// Query serves the query API (/v1/changes, /v1/events/{uid},
// /v1/runs/{key}/changes, /v1/drift) and the web page over the change
// index.
type Query struct {
	Index *index.Index
	// Runs gives run records for run views; nil shows keys only.
	Runs *correlate.Registry
	// Events fetches a full event by stream sequence; nil (or an error)
	// falls back to the archive.
	Events EventGetter
	// Archive gives proofs and events the stream no longer holds; nil:
	// none.
	Archive worm.Store
	// Token, if set, is required as a bearer token (or the web page's
	// cookie). Config requires it when the server is not on loopback.
	Token string
	Now   func() time.Time
}

// EventGetter fetches one stream message by sequence. A nil error
// promises the message's data; jetstream.ErrMsgNotFound says the stream
// no longer holds it.
type EventGetter interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
}

// Routes are the query API's and the web page's endpoints.
func (q *Query) Routes() []Route {
	if q.Now == nil {
		q.Now = time.Now
	}
	api := []Route{
		{"GET /v1/changes", http.HandlerFunc(q.changes)},
		{"GET /v1/events/{uid}", http.HandlerFunc(q.event)},
		{"GET /v1/runs/{key}/changes", http.HandlerFunc(q.runChanges)},
		{"GET /v1/drift", http.HandlerFunc(q.drift)},
	}
	for i := range api {
		api[i].Handler = q.auth(api[i].Handler, false)
	}
	return append(api, q.webRoutes()...)
}

const tokenCookie = "trailkeeper_token"

// RequireToken lets a request through with token as its bearer token
// (or the web page's cookie); an empty token lets everything through.
func RequireToken(token string, h http.Handler) http.Handler {
	return (&Query{Token: token}).auth(h, false)
}

// auth lets a request through with the token as a bearer token or in the
// web page's cookie. Pages answer with the sign-in form instead of 401.
func (q *Query) auth(h http.Handler, page bool) http.Handler {
	if q.Token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := requestToken(r)
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(q.Token)) == 1 {
			h.ServeHTTP(w, r)
			return
		}
		if page {
			q.signIn(w, r, ok)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="trailkeeper"`)
		apiError(w, http.StatusUnauthorized, errors.New("a valid bearer token is required"))
	})
}

// requestToken is the bearer token, or the web page's cookie.
func requestToken(r *http.Request) (string, bool) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		if c, err := r.Cookie(tokenCookie); err == nil {
			got, ok = c.Value, true
		}
	}
	return got, ok
}

// hasToken: the request carries token.
func hasToken(r *http.Request, token string) bool {
	got, ok := requestToken(r)
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// params reads a query string strictly: an unknown parameter is an
// error naming it, so that a typo does not silently widen a search.
type params struct {
	v    url.Values
	errs []error
}

func newParams(r *http.Request, known ...string) *params {
	p := &params{v: r.URL.Query()}
	for k := range p.v {
		if !slices.Contains(known, k) {
			p.errs = append(p.errs, &index.ParamError{Param: k, Msg: "unknown parameter; known: " + strings.Join(known, ", ")})
		}
	}
	return p
}

func (p *params) str(k string) string { return strings.TrimSpace(p.v.Get(k)) }

// time reads an RFC 3339 time, a date, or a duration back from now
// ("24h", "7d").
func (p *params) time(k string, now time.Time) time.Time {
	s := p.str(k)
	if s == "" {
		return time.Time{}
	}
	t, err := ParseWhen(s, now)
	if err != nil {
		p.errs = append(p.errs, &index.ParamError{Param: k, Msg: err.Error()})
	}
	return t
}

// ParseWhen reads a point in time: RFC 3339, a date (2006-01-02), or an
// age back from now ("90m", "24h", "7d").
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 && n <= 100*366 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339, a date (2006-01-02) or an age (24h, 7d)", s)
}

func (p *params) boolean(k string) *bool {
	s := p.str(k)
	if s == "" {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.errs = append(p.errs, &index.ParamError{Param: k, Msg: "true or false"})
		return nil
	}
	return &b
}

func (p *params) limit() int {
	s := p.str("limit")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		p.errs = append(p.errs, &index.ParamError{Param: "limit", Msg: "a number from 1 to 1000"})
	}
	return n
}

func (p *params) order() bool {
	switch p.str("order") {
	case "", "desc":
		return false
	case "asc":
		return true
	}
	p.errs = append(p.errs, &index.ParamError{Param: "order", Msg: "asc or desc"})
	return false
}

var changeParams = []string{"resource", "actor", "run", "cloud", "account", "since", "until", "mutating", "drift", "outcome", "link", "order", "limit", "cursor"}

// changeQuery reads the filters of a change list.
func (q *Query) changeQuery(p *params) index.Query {
	iq := index.Query{
		Resource: p.str("resource"), Actor: p.str("actor"), Run: p.str("run"), Cloud: p.str("cloud"), Account: p.str("account"),
		Since: p.time("since", q.Now()), Until: p.time("until", q.Now()), Mutating: p.boolean("mutating"),
		Outcome: p.str("outcome"), Band: p.str("link"), Ascending: p.order(), Limit: p.limit(), Cursor: p.str("cursor"),
	}
	if d := p.boolean("drift"); d != nil {
		iq.Drift = *d
	}
	if c := iq.Cloud; c != "" && c != "aws" && c != "gcp" && c != "azure" {
		p.errs = append(p.errs, &index.ParamError{Param: "cloud", Msg: "aws, gcp or azure"})
	}
	return iq
}

func (q *Query) changes(w http.ResponseWriter, r *http.Request) {
	p := newParams(r, changeParams...)
	iq := q.changeQuery(p)
	if len(p.errs) > 0 {
		apiError(w, http.StatusBadRequest, p.errs[0])
		return
	}
	page, err := q.Index.Changes(r.Context(), iq)
	if err != nil {
		apiError(w, statusOf(err), err)
		return
	}
	writeJSON(w, page)
}

// EventView is an event with what the index and the archive know of it.
type EventView struct {
	Change  index.Change    `json:"change"`
	Event   json.RawMessage `json:"event,omitempty"` // the OCSF event as published
	Source  string          `json:"source"`          // stream, archive or "" (gone)
	Subject string          `json:"subject,omitempty"`
	Proof   *worm.Proof     `json:"archive_proof,omitempty"`
	// ProofError says why there is no proof (not archived yet, no
	// archive).
	ProofError string `json:"archive_proof_error,omitempty"`
}

// View assembles an event's view.
func (q *Query) View(ctx context.Context, uid string) (EventView, error) {
	c, err := q.Index.Change(ctx, uid)
	if err != nil {
		return EventView{}, err
	}
	v := EventView{Change: c}
	if q.Events != nil {
		if m, err := q.Events.GetMsg(ctx, c.Seq); err == nil {
			v.Event, v.Source, v.Subject = m.Data, "stream", m.Subject
		}
	}
	switch {
	case q.Archive == nil:
		v.ProofError = "no archive is configured"
	case c.Leaf == nil:
		v.ProofError = "not archived yet (segments are cut every archive.segment_age)"
	default:
		p, err := q.Index.Prove(ctx, q.Archive, uid)
		if err != nil {
			v.ProofError = err.Error()
		} else {
			v.Proof = &p
		}
		if v.Event == nil {
			if l, err := q.Index.ArchivedLeaf(ctx, q.Archive, *c.Leaf); err == nil {
				v.Event, v.Source, v.Subject = json.RawMessage(l.Data), "archive", l.Subject
			}
		}
	}
	return v, nil
}

func (q *Query) event(w http.ResponseWriter, r *http.Request) {
	if p := newParams(r); len(p.errs) > 0 {
		apiError(w, http.StatusBadRequest, p.errs[0])
		return
	}
	v, err := q.View(r.Context(), r.PathValue("uid"))
	if err != nil {
		apiError(w, statusOf(err), err)
		return
	}
	writeJSON(w, v)
}

// RunView is what a run did.
type RunView struct {
	Run     *correlate.Run           `json:"run,omitempty"` // nil when the registry does not hold it
	Changes index.Page[index.Change] `json:"changes"`
	// Plan says, for each planned change, which of the run's changes
	// applied it (only with the first page).
	Plan  []PlanStatus  `json:"plan,omitempty"`
	Drift []index.Drift `json:"drift_since,omitempty"`
}

// PlanStatus is one planned change and what applied it.
type PlanStatus struct {
	Address string   `json:"address"`
	Actions []string `json:"actions"`
	Applied []string `json:"applied_by,omitempty"` // event uids
}

// Run assembles a run's view: its changes (one page, oldest first), plan
// against what it did, and drift on its resources since it started.
func (q *Query) Run(ctx context.Context, key string, iq index.Query) (RunView, error) {
	iq.Run = key
	page, err := q.Index.Changes(ctx, iq)
	if err != nil {
		return RunView{}, err
	}
	v := RunView{Changes: page}
	if q.Runs != nil {
		if run, ok := q.Runs.Get(key); ok {
			v.Run = &run
		}
	}
	if v.Run == nil && len(page.Items) == 0 && iq.Cursor == "" {
		return RunView{}, fmt.Errorf("run %q: %w", key, index.ErrNotFound)
	}
	if v.Run != nil && len(v.Run.Plan) > 0 {
		// Out of plan now, not only once the drift detector's grace
		// has passed: the same rule as the detector's.
		for i, c := range v.Changes.Items {
			if _, ok := v.Run.Planned(uids(c)); !ok && c.Mutating && c.Outcome == "success" && len(c.Resources) > 0 {
				v.Changes.Items[i].OutOfPlan = true
			}
		}
		if iq.Cursor == "" {
			v.Plan, err = q.planStatus(ctx, v.Run)
			if err != nil {
				return RunView{}, err
			}
		}
	}
	if iq.Cursor == "" {
		var resources []string
		seen := map[string]bool{}
		for _, c := range v.Changes.Items {
			for _, r := range c.Resources {
				if r.UID != "" && !seen[r.UID] && len(resources) < 200 {
					seen[r.UID] = true
					resources = append(resources, r.UID)
				}
			}
		}
		if len(resources) > 0 {
			since := time.Time{}
			if v.Run != nil {
				since = v.Run.StartedAt
			} else if len(v.Changes.Items) > 0 {
				since = v.Changes.Items[0].Time
			}
			d, err := q.Index.Drift(ctx, index.DriftQuery{Since: since, Resources: resources, Limit: 200})
			if err != nil {
				return RunView{}, err
			}
			v.Drift = d.Items
		}
	}
	return v, nil
}

// planStatus matches the run's plan with every change it made (the first
// 5 000).
func (q *Query) planStatus(ctx context.Context, run *correlate.Run) ([]PlanStatus, error) {
	out := make([]PlanStatus, len(run.Plan))
	at := map[string]int{}
	for i, c := range run.Plan {
		out[i] = PlanStatus{Address: c.Address, Actions: c.Actions}
		at[c.Address] = i
	}
	iq := index.Query{Run: run.Key, Ascending: true, Limit: 1000}
	for range 5 {
		page, err := q.Index.Changes(ctx, iq)
		if err != nil {
			return nil, err
		}
		for _, c := range page.Items {
			if addr, ok := run.Planned(uids(c)); ok && c.Mutating && c.Outcome == "success" {
				out[at[addr]].Applied = append(out[at[addr]].Applied, c.UID)
			}
		}
		if page.Next == "" {
			break
		}
		iq.Cursor = page.Next
	}
	return out, nil
}

func uids(c index.Change) []string {
	out := make([]string, len(c.Resources))
	for i, r := range c.Resources {
		out[i] = r.UID
	}
	return out
}

func (q *Query) runChanges(w http.ResponseWriter, r *http.Request) {
	p := newParams(r, "order", "limit", "cursor")
	iq := index.Query{Ascending: true, Limit: p.limit(), Cursor: p.str("cursor")}
	if p.str("order") != "" {
		iq.Ascending = p.order()
	}
	if len(p.errs) > 0 {
		apiError(w, http.StatusBadRequest, p.errs[0])
		return
	}
	v, err := q.Run(r.Context(), r.PathValue("key"), iq)
	if err != nil {
		apiError(w, statusOf(err), err)
		return
	}
	writeJSON(w, v)
}

var driftParams = []string{"since", "until", "cloud", "account", "type", "resource", "limit", "cursor"}

func (q *Query) driftQuery(p *params) index.DriftQuery {
	dq := index.DriftQuery{Since: p.time("since", q.Now()), Until: p.time("until", q.Now()), Cloud: p.str("cloud"),
		Account: p.str("account"), Type: p.str("type"), Limit: p.limit(), Cursor: p.str("cursor")}
	if r := p.str("resource"); r != "" {
		dq.Resources = []string{r}
	}
	return dq
}

func (q *Query) drift(w http.ResponseWriter, r *http.Request) {
	p := newParams(r, driftParams...)
	dq := q.driftQuery(p)
	if len(p.errs) > 0 {
		apiError(w, http.StatusBadRequest, p.errs[0])
		return
	}
	page, err := q.Index.Drift(r.Context(), dq)
	if err != nil {
		apiError(w, statusOf(err), err)
		return
	}
	writeJSON(w, page)
}

func statusOf(err error) int {
	var pe *index.ParamError
	switch {
	case errors.As(err, &pe):
		return http.StatusBadRequest
	case errors.Is(err, index.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// apiError answers {"error": …, "param": …}.
func apiError(w http.ResponseWriter, status int, err error) {
	body := map[string]string{"error": err.Error()}
	var pe *index.ParamError
	if errors.As(err, &pe) {
		body["param"], body["error"] = pe.Param, pe.Msg
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
