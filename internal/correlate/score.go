package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trailkeeper/trailkeeper/normalize"
	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// Bands of a link's confidence (DESIGN §5).
const (
	BandAttested    = "attested"    // ≥ 0.90: an exact marker
	BandInferred    = "inferred"    // 0.60 – 0.90
	BandAmbiguous   = "ambiguous"   // 0.30 – 0.60, or two runs within 0.1
	BandUnexplained = "unexplained" // < 0.30
)

func band(c float64) string {
	switch {
	case c >= 0.90:
		return BandAttested
	case c >= 0.60:
		return BandInferred
	case c >= 0.30:
		return BandAmbiguous
	}
	return BandUnexplained
}

// Link is an event's best run, how sure, and why.
type Link struct {
	Run        Run
	Confidence float64
	Band       string
	Evidence   []string
}

// Weights of the inference evidence, combined as noisy-OR.
const (
	wIdentity = 0.55
	wWindow   = 0.35
	wApply    = 0.45
	wPlan     = 0.5
	wTool     = 0.25
	capInfer  = 0.89 // only a marker attests
	capHuman  = 0.59 // a console session or a human without a marker is never inferred
)

var uuidRE = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)

// Correlator links events to runs; it implements pipeline.Correlator.
// It never fails a page: an event it cannot link is published unlinked.
type Correlator struct {
	Registry *Registry
	Now      func() time.Time
	Logger   *slog.Logger

	mu   sync.Mutex
	keys map[string]string // access key id → run key, learned from STS calls
}

// Correlate implements pipeline.Correlator.
func (c *Correlator) Correlate(_ context.Context, events []*normalize.Event) error {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	for _, ev := range events {
		c.learnKey(ev.OCSF)
		l, ok := c.Link(ev.OCSF, now)
		if !ok {
			continue
		}
		attach(ev.OCSF, l)
		if err := ev.Encode(); err != nil && c.Logger != nil {
			c.Logger.Warn("re-encoding a correlated event", "uid", ev.UID, "err", err)
		}
	}
	return nil
}

// changes reports whether an event is a successful change (ocsf's one
// definition): reads, sign-ins and credential exchanges, and failed calls
// change nothing.
func changes(e *ocsf.Event) bool {
	return e.IsChange() && e.StatusID != 2
}

// Link finds the event's best run.
func (c *Correlator) Link(e *ocsf.Event, now time.Time) (Link, bool) {
	if !changes(e) {
		return Link{}, false
	}
	t := time.UnixMilli(e.Time)
	ids := actorIDs(e)
	ua := ""
	if e.HTTPRequest != nil {
		ua = e.HTTPRequest.UserAgent
	}
	human := isHuman(e, ua)

	// Tier 1: an exact marker in the record, used by an identity the run
	// lists (or a run that lists none); or an access key issued to a run.
	if run, key, ok := c.keyRun(e); ok {
		return Link{Run: run, Confidence: 0.95, Band: BandAttested, Evidence: []string{"access key " + key + " was issued to the run (configure-aws-credentials md/run_id)"}}, true
	}
	var spoofed []string
	for _, m := range c.markersIn(e.RawData) {
		run, ok := c.Registry.byMarkerKey(m)
		if !ok {
			continue
		}
		if len(run.Identities) > 0 && !matches(run.Identities, ids) {
			spoofed = append(spoofed, fmt.Sprintf("marker %s of run %s used by %s, which the run does not list: possible spoofing", m, run.Key, strings.Join(ids, ", ")))
			continue
		}
		// A marker proves the run only inside its window: seen long
		// before it started or after it finished, it is a replayed (or
		// leaked) session name or token, and the event is left to
		// inference, which only weighs runs whose window holds it.
		if from, to := run.window(now); t.Before(from) || t.After(to) {
			spoofed = append(spoofed, fmt.Sprintf("marker %s of run %s seen at %s, outside the run's window (%s to %s): possible replay",
				m, run.Key, t.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)))
			continue
		}
		return Link{Run: run, Confidence: 0.97, Band: BandAttested, Evidence: []string{"marker " + m + " in the record"}}, true
	}

	// Otherwise inference over the runs whose window holds the event.
	type cand struct {
		run Run
		p   float64
		ev  []string
	}
	var cands []cand
	for _, run := range c.Registry.around(t, now) {
		p, evs := 0.0, []string{"inside the run's window"}
		miss := 1 - wWindow
		if matches(run.Identities, ids) {
			miss *= 1 - wIdentity
			evs = append(evs, "identity is the run's")
		}
		if addr, ok := inPlan(run, e); ok {
			miss *= 1 - wPlan
			evs = append(evs, "resource in the run's plan ("+addr+")")
		}
		if addr, ok := inApplyWindow(run, e, t); ok {
			miss *= 1 - wApply
			evs = append(evs, "inside the apply window of "+addr)
		}
		if toolAgent(run.Tool, ua, e.RawData) {
			miss *= 1 - wTool
			evs = append(evs, "user agent of "+run.Tool)
		}
		p = min(1-miss, capInfer)
		if human {
			p = min(p, capHuman)
			evs = append(evs, "a human or console session: not inferred without a marker")
		}
		cands = append(cands, cand{run, p, evs})
	}
	if len(cands) == 0 {
		if len(spoofed) > 0 {
			return Link{Confidence: 0, Band: BandUnexplained, Evidence: spoofed}, true
		}
		return Link{}, false
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		switch {
		case a.p > b.p:
			return -1
		case a.p < b.p:
			return 1
		}
		return 0
	})
	best := cands[0]
	l := Link{Run: best.run, Confidence: round(best.p), Band: band(best.p), Evidence: append(best.ev, spoofed...)}
	if len(cands) > 1 && best.p-cands[1].p < 0.1 && l.Band != BandUnexplained {
		l.Band = BandAmbiguous
		l.Evidence = append(l.Evidence, fmt.Sprintf("run %s scores %.2f too", cands[1].run.Key, round(cands[1].p)))
	}
	return l, true
}

func round(p float64) float64 { return float64(int(p*100+0.5)) / 100 }

// findTokens is tokenRE.FindAllString(s, -1) without the regexp engine,
// which was a third of the correlator's time (it runs over every raw
// record); FuzzFinders checks that the two agree.
func findTokens(s string) []string {
	var out []string
	for i := 0; ; {
		j := strings.Index(s[i:], "tk")
		if j < 0 {
			return out
		}
		j += i
		if j+18 <= len(s) && base32Lower(s[j+2:j+18]) {
			out = append(out, s[j:j+18])
			i = j + 18
		} else {
			i = j + 1
		}
	}
}

func base32Lower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// findUUIDv5 is uuidRE.FindAllString(s, -1): a match has '-' at its
// ninth byte, so only the dashes are candidates.
func findUUIDv5(s string) []string {
	var out []string
	next := 0
	for j := 0; ; j++ {
		k := strings.IndexByte(s[j:], '-')
		if k < 0 {
			return out
		}
		j += k
		if i := j - 8; i >= next && i+36 <= len(s) && isUUIDv5(s[i:i+36]) {
			out = append(out, s[i:i+36])
			next = i + 36
		}
	}
}

func isUUIDv5(u string) bool {
	for i := 0; i < 36; i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		case 14:
			if c != '5' {
				return false
			}
		case 19:
			if !strings.ContainsRune("89abAB", rune(c)) {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// markersIn returns the markers a record holds: run tokens, Azure
// correlation ids of runs, and explicit markers.
func (c *Correlator) markersIn(raw string) []string {
	out := findTokens(raw)
	for _, u := range findUUIDv5(raw) {
		out = append(out, strings.ToLower(u)) // the registry keys them lower case
	}
	for _, m := range c.Registry.explicitMarkers() {
		if strings.Contains(raw, m) {
			out = append(out, m)
		}
	}
	return out
}

// actorIDs are the names the event gives its actor.
func actorIDs(e *ocsf.Event) []string {
	var ids []string
	if a := e.Actor; a != nil {
		if u := a.User; u != nil {
			ids = append(ids, u.UID, u.UIDAlt, u.Name, u.EmailAddr)
		}
		if s := a.Session; s != nil {
			ids = append(ids, s.Issuer, s.UID)
		}
		ids = append(ids, a.AppUID)
	}
	return slices.DeleteFunc(ids, func(s string) bool { return s == "" })
}

// matches reports whether one of the run's identities names the actor: an
// exact id, or a role ARN the actor's session was issued by.
func matches(identities, ids []string) bool {
	for _, want := range identities {
		for _, id := range ids {
			if strings.EqualFold(want, id) || sameRole(want, id) {
				return true
			}
		}
	}
	return false
}

// sameRole: arn:aws:iam::A:role/R matches arn:aws:sts::A:assumed-role/R/session.
func sameRole(role, id string) bool {
	acct, name, ok := strings.Cut(strings.TrimPrefix(role, "arn:aws:iam::"), ":role/")
	if !ok || strings.Contains(name, "/") {
		return false
	}
	return strings.HasPrefix(id, "arn:aws:sts::"+acct+":assumed-role/"+name+"/")
}

func toolAgent(tool, ua, raw string) bool {
	switch tool {
	case "terraform", "opentofu":
		return strings.Contains(ua, "Terraform/") || strings.Contains(ua, "OpenTofu")
	case "pulumi":
		return strings.Contains(ua, "Pulumi")
	case "cloudformation":
		return strings.Contains(raw, "cloudformation.amazonaws.com")
	}
	return false
}

// isHuman: a console session, or a user signed in as a person.
func isHuman(e *ocsf.Event, ua string) bool {
	if clientKind(e, ua) == clientConsole {
		return true
	}
	return e.Actor != nil && e.Actor.User != nil && e.Actor.User.Type == "IAMUser" && e.Actor.Session == nil
}

// attach writes the link into the event: an iac.run enrichment and
// metadata.correlation_uid.
//
// Only a link (the attested or inferred band) names its run: in
// metadata.correlation_uid, the enrichment's value and its run_key. An
// ambiguous or unexplained event names the band instead, and its best
// candidate only as candidate_run_key, so that a SIEM joining on the run
// key never reads a guess as an answer.
func attach(e *ocsf.Event, l Link) {
	linked := l.Run.Key != "" && (l.Band == BandAttested || l.Band == BandInferred)
	fields := map[string]any{"confidence": l.Confidence, "band": l.Band, "evidence": l.Evidence}
	value := l.Band
	if linked {
		value = l.Run.Key
		fields["run_key"], fields["tool"], fields["commit"] = l.Run.Key, l.Run.Tool, l.Run.Commit
		fields["repo"], fields["workspace"] = l.Run.Scope.Repo, l.Run.Scope.Workspace
		e.Metadata.CorrelationUID = l.Run.Key
	} else if l.Run.Key != "" {
		fields["candidate_run_key"] = l.Run.Key
	}
	data, _ := json.Marshal(fields)
	e.Enrichments = append(e.Enrichments, ocsf.Enrichment{Name: "iac.run", Value: value, Data: data, Type: "iac_run", Provider: "trailkeeper"})
}

// inPlan: one of the event's resources is a planned change of the run.
func inPlan(run Run, e *ocsf.Event) (string, bool) {
	uids := make([]string, len(e.Resources))
	for i, r := range e.Resources {
		uids[i] = r.UID
	}
	return run.Planned(uids)
}

// Planned returns the address of the run's planned change that names one
// of the resource uids (the same id, or an ARN or path ending in it). A
// change's ids are those its plan knew, the one the apply log reported
// for its address (apply_complete's id_value: all a create has), and
// those its workspace's state lists for its address (the registry adds
// them): a change by the run to a resource it planned to create is
// planned. This is the one rule of the correlator, the drift detector and
// the on-call run view.
func (r *Run) Planned(uids []string) (string, bool) {
	for _, c := range r.Plan {
		ids := c.IDs
		for _, a := range r.Applied {
			if a.Address == c.Address && a.ID != "" {
				ids = append(slices.Clip(ids), a.ID)
			}
		}
		for _, id := range ids {
			for _, u := range uids {
				if idMatches(u, id) {
					return c.Address, true
				}
			}
		}
	}
	return "", false
}

// inApplyWindow: the event falls in the apply window (with a minute of
// margin) of a resource it touches.
func inApplyWindow(run Run, e *ocsf.Event, t time.Time) (string, bool) {
	for _, a := range run.Applied {
		end := a.End
		if end.IsZero() {
			end = a.Start.Add(time.Hour)
		}
		if t.Before(a.Start.Add(-time.Minute)) || t.After(end.Add(time.Minute)) {
			continue
		}
		for _, r := range e.Resources {
			if idMatches(r.UID, a.ID) {
				return a.Address, true
			}
		}
	}
	return "", false
}

var runIDRE = regexp.MustCompile(`md/run_id#(\d+)`)

// learnKey remembers the access key an STS call made by
// configure-aws-credentials (≥ 6.2, which puts md/run_id#<GitHub run id> in
// its user agent) issued, when a GitHub run with that id is registered:
// every later call signed with the key is that run's.
func (c *Correlator) learnKey(e *ocsf.Event) {
	if e.HTTPRequest == nil || e.Session == nil || e.Session.CredentialUID == "" {
		return
	}
	m := runIDRE.FindStringSubmatch(e.HTTPRequest.UserAgent)
	if m == nil {
		return
	}
	for _, run := range c.Registry.Since(time.Time{}) {
		if run.Orchestrator == "github" && strings.Contains(run.Key, ":"+m[1]+":") {
			c.mu.Lock()
			if c.keys == nil {
				c.keys = map[string]string{}
			}
			if len(c.keys) > 100000 {
				clear(c.keys)
			}
			c.keys[e.Session.CredentialUID] = run.Key
			c.mu.Unlock()
			return
		}
	}
}

// keyRun returns the run an event's access key was issued to.
func (c *Correlator) keyRun(e *ocsf.Event) (Run, string, bool) {
	if e.Actor == nil || e.Actor.User == nil {
		return Run{}, "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cred := range e.Actor.User.Credentials {
		if key, ok := c.keys[cred.UID]; ok {
			if run, ok := c.Registry.Get(key); ok {
				return run, cred.UID, true
			}
		}
	}
	return Run{}, "", false
}
