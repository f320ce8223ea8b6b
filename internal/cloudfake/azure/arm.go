// Package azure is a local Azure Resource Manager over TLS, with the Entra
// ID token endpoint, that the real Azure SDK clients talk to: the Activity
// Log (`…/eventtypes/management/values` with `$filter` on eventTimestamp,
// newest first, `nextLink` paging), the subscriptions list, and
// `/{tenant}/oauth2/v2.0/token` so that azidentity's ClientSecretCredential
// runs for real. It can answer 429 with Retry-After, delay responses, and
// hold events back so that they appear late.
package azure

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Token is the access token the fake issues and demands.
const Token = "fake-arm-token"

// Event is one Activity Log event.
type Event struct {
	Subscription string
	Time         time.Time // eventTimestamp
	Appear       time.Time // zero: at Time
	Raw          map[string]any
}

// MakeEvent is a REST EventData as ARM returns it.
func MakeEvent(sub, id, operation string, t time.Time) Event {
	name := func(v string) map[string]any { return map[string]any{"value": v, "localizedValue": v} }
	rid := "/subscriptions/" + sub + "/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/st" + strings.ToLower(id)
	return Event{Subscription: sub, Time: t, Raw: map[string]any{
		"authorization":        map[string]any{"action": operation, "scope": rid},
		"caller":               "deployer@example.com",
		"channels":             "Operation",
		"claims":               map[string]any{"http://schemas.microsoft.com/identity/claims/objectidentifier": "0000-oid", "appid": "app-1"},
		"correlationId":        "corr-" + id,
		"description":          "",
		"eventDataId":          "evt-" + id,
		"eventName":            name("EndRequest"),
		"category":             name("Administrative"),
		"httpRequest":          map[string]any{"clientRequestId": "req-" + id, "clientIpAddress": "203.0.113.9", "method": "PUT"},
		"id":                   rid + "/events/evt-" + id + "/ticks/1",
		"level":                "Informational",
		"resourceGroupName":    "rg-app",
		"resourceProviderName": name("Microsoft.Storage"),
		"resourceId":           rid,
		"resourceType":         name("Microsoft.Storage/storageAccounts"),
		"operationId":          "op-" + id,
		"operationName":        name(operation),
		"properties":           map[string]any{"statusCode": "OK"},
		"status":               name("Succeeded"),
		"subStatus":            name("OK"),
		"eventTimestamp":       t.UTC().Format("2006-01-02T15:04:05.0000000Z"),
		"submissionTimestamp":  t.Add(30 * time.Second).UTC().Format("2006-01-02T15:04:05.0000000Z"),
		"subscriptionId":       sub,
		"tenantId":             "tenant-1",
	}}
}

// Fault makes matching requests fail or stall.
type Fault struct {
	Times      int // how many more (negative: forever)
	Status     int // e.g. 429; 0 with Delay: only slow
	RetryAfter int // seconds, sent with the error
	Delay      time.Duration
}

// Request is one Activity Log request the server answered.
type Request struct {
	Wall         time.Time
	Subscription string
	Filter       string
	Status       int
}

// Server is the fake; New starts it, Close stops it.
type Server struct {
	*httptest.Server

	mu     sync.Mutex
	now    func() time.Time
	events []Event
	subs   []string
	faults []*Fault
	reqs   []Request
	tokens int
}

// New starts a TLS server; now is its clock (nil: real). Clients must use
// its Client() transport, which trusts its certificate.
func New(now func() time.Time, subscriptions ...string) *Server {
	if now == nil {
		now = time.Now
	}
	s := &Server{now: now, subs: subscriptions}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Add makes events available.
func (s *Server) Add(evs ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, evs...)
}

// AddFault installs f for Activity Log requests.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Requests returns the Activity Log requests answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// TokensIssued is how many tokens the token endpoint gave out.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens
}

var (
	valuesPath = regexp.MustCompile(`^/subscriptions/([^/]+)/providers/Microsoft\.Insights/eventtypes/management/values$`)
	tsFilter   = regexp.MustCompile(`eventTimestamp\s+(ge|le|gt|lt)\s+'([^']+)'`)
	tenantPath = regexp.MustCompile(`^/([^/]+)/(oauth2/v2\.0/token|v2\.0/\.well-known/openid-configuration)$`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if m := tenantPath.FindStringSubmatch(r.URL.Path); m != nil {
		s.entra(w, r, m[1], m[2])
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token {
		armError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "no valid bearer token")
		return
	}
	switch {
	case r.URL.Path == "/subscriptions":
		var out []map[string]any
		for _, sub := range s.subs {
			out = append(out, map[string]any{"id": "/subscriptions/" + sub, "subscriptionId": sub, "displayName": sub, "state": "Enabled", "tenantId": "tenant-1"})
		}
		writeJSON(w, map[string]any{"value": out})
	case valuesPath.MatchString(r.URL.Path):
		s.activityLog(w, r, valuesPath.FindStringSubmatch(r.URL.Path)[1])
	default:
		armError(w, http.StatusNotFound, "NotFound", r.URL.Path)
	}
}

// entra answers the token endpoint and its discovery document.
func (s *Server) entra(w http.ResponseWriter, r *http.Request, tenant, what string) {
	base := s.URL + "/" + tenant
	if strings.HasPrefix(what, "v2.0") {
		writeJSON(w, map[string]any{
			"token_endpoint": base + "/oauth2/v2.0/token", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer": base + "/v2.0", "jwks_uri": base + "/discovery/v2.0/keys", "tenant_region_scope": "WW",
		})
		return
	}
	if err := r.ParseForm(); err != nil || r.Form.Get("client_secret") == "" {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	s.tokens++
	s.mu.Unlock()
	writeJSON(w, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": Token})
}

type skipToken struct {
	Filter   string    `json:"f"`
	Offset   int       `json:"o"`
	Snapshot time.Time `json:"s"`
}

func (s *Server) activityLog(w http.ResponseWriter, r *http.Request, sub string) {
	q := r.URL.Query()
	filter := q.Get("$filter")
	s.mu.Lock()
	now := s.now()
	var f *Fault
	for _, x := range s.faults {
		if x.Times != 0 {
			if x.Times > 0 {
				x.Times--
			}
			f = x
			break
		}
	}
	s.mu.Unlock()
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.reqs = append(s.reqs, Request{Wall: time.Now(), Subscription: sub, Filter: filter, Status: status})
		s.mu.Unlock()
	}()
	if f != nil && f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	if f != nil && f.Status != 0 {
		status = f.Status
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(f.RetryAfter))
		}
		armError(w, f.Status, "TooManyRequests", "injected fault")
		return
	}
	var ge, le time.Time
	for _, m := range tsFilter.FindAllStringSubmatch(filter, -1) {
		t, err := time.Parse(time.RFC3339Nano, m[2])
		if err != nil {
			status = http.StatusBadRequest
			armError(w, status, "BadRequest", "bad eventTimestamp "+m[2])
			return
		}
		switch m[1] {
		case "ge", "gt":
			ge = t
		case "le", "lt":
			le = t
		}
	}
	if ge.IsZero() || le.IsZero() {
		status = http.StatusBadRequest
		armError(w, status, "BadRequest", "the $filter must bound eventTimestamp")
		return
	}
	tok := skipToken{Filter: filter, Snapshot: now}
	if st := q.Get("$skipToken"); st != "" {
		b, err := base64.RawURLEncoding.DecodeString(st)
		if err != nil || json.Unmarshal(b, &tok) != nil || tok.Filter != filter {
			status = http.StatusBadRequest
			armError(w, status, "BadRequest", "invalid $skipToken")
			return
		}
	}
	s.mu.Lock()
	var match []Event
	for _, e := range s.events {
		appear := e.Appear
		if appear.IsZero() {
			appear = e.Time
		}
		if e.Subscription == sub && !appear.After(tok.Snapshot) && !e.Time.Before(ge) && !e.Time.After(le) {
			match = append(match, e)
		}
	}
	s.mu.Unlock()
	slices.SortStableFunc(match, func(a, b Event) int { return b.Time.Compare(a.Time) }) // newest first
	const pageSize = 200
	from := min(tok.Offset, len(match))
	to := min(from+pageSize, len(match))
	out := map[string]any{"value": rawValues(match[from:to])}
	if to < len(match) {
		tok.Offset = to
		b, _ := json.Marshal(tok)
		next := *r.URL
		next.Scheme, next.Host = "https", r.Host
		nq := next.Query()
		nq.Set("$skipToken", base64.RawURLEncoding.EncodeToString(b))
		next.RawQuery = strings.ReplaceAll(nq.Encode(), "+", "%20")
		out["nextLink"] = next.String()
	}
	writeJSON(w, out)
}

func rawValues(evs []Event) []map[string]any {
	out := make([]map[string]any, len(evs))
	for i, e := range evs {
		out[i] = e.Raw
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func armError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

// LoadFile serves the REST EventData records of a file (a {"value":[…]}
// page, a JSON array, or one record) as events of their subscription, at
// their eventTimestamp.
func (s *Server) LoadFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var recs []map[string]any
	var page struct {
		Value []map[string]any `json:"value"`
	}
	switch {
	case json.Unmarshal(b, &page) == nil && page.Value != nil:
		recs = page.Value
	case json.Unmarshal(b, &recs) == nil:
	default:
		var one map[string]any
		if err := json.Unmarshal(b, &one); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		recs = []map[string]any{one}
	}
	n := 0
	for _, r := range recs {
		sub, _ := r["subscriptionId"].(string)
		ts, _ := r["eventTimestamp"].(string)
		t, err := time.Parse(time.RFC3339Nano, ts)
		if sub == "" || err != nil {
			continue
		}
		s.Add(Event{Subscription: sub, Time: t, Raw: r})
		n++
	}
	return n, nil
}
