package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/trailkeeper/trailkeeper/internal/jsonscan"
	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// Resource is one resource a change touched.
type Resource struct {
	UID  string `json:"uid,omitempty"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
}

// row is what a change contributes to the index.
type row struct {
	uid, cloud, account, region      string
	actor, actorName, actorType      string
	action, service, outcome, runKey string
	band                             string
	time                             int64
	mutating                         bool
	confidence                       float64
	resources                        []Resource
}

// stmts are the prepared statements of one Apply transaction.
type stmts struct {
	change, res, fts, drift, changeTime, actor *sql.Stmt
}

func prepare(ctx context.Context, tx *sql.Tx) (*stmts, error) {
	var s stmts
	var err error
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.change, `INSERT OR IGNORE INTO changes(seq, uid, time, cloud, account, region, actor, actor_name, actor_type,
			action, service, outcome, mutating, run_key, band, confidence, resources) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`},
		{&s.res, `INSERT OR IGNORE INTO res(rid, time, seq) VALUES (?, ?, ?)`},
		{&s.fts, `INSERT INTO res_fts(rowid, text) VALUES (?, ?)`},
		{&s.drift, `INSERT OR IGNORE INTO drift(uid, seq, event_uid, time, found, type, severity, cloud, account, resource, run_key, workspace, title)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`},
		{&s.changeTime, `SELECT time FROM changes WHERE uid = ?`},
		{&s.actor, `INSERT OR IGNORE INTO actors(actor, name) VALUES (?, ?)`},
	} {
		if *p.st, err = tx.PrepareContext(ctx, p.q); err != nil {
			s.close()
			return nil, err
		}
	}
	return &s, nil
}

func (s *stmts) close() {
	for _, st := range []*sql.Stmt{s.change, s.res, s.fts, s.drift, s.changeTime, s.actor} {
		if st != nil {
			st.Close()
		}
	}
}

// apply indexes one message: an event, a drift finding, or nothing.
func (s *stmts) apply(ctx context.Context, m Msg) error {
	kind := kindOf(m.Subject)
	if kind == "" {
		return nil
	}
	e, err := decodeEvent(m.Data, kind == "drift")
	if err != nil || e.Metadata.UID == "" {
		return nil // not an event: the dead-letter path and the archive keep it
	}
	if kind == "drift" {
		return s.applyDrift(ctx, m.Seq, e)
	}
	r := rowOf(e)
	res, err := s.change.ExecContext(ctx, m.Seq, r.uid, r.time, r.cloud, r.account, r.region, r.actor, r.actorName, r.actorType,
		r.action, r.service, r.outcome, r.mutating, r.runKey, r.band, r.confidence, resourcesJSON(r.resources))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // this uid is indexed already (re-published after the duplicate window)
	}
	if r.actor != "" || r.actorName != "" {
		if _, err := s.actor.ExecContext(ctx, r.actor, r.actorName); err != nil {
			return err
		}
	}
	var text strings.Builder
	for _, rs := range r.resources {
		id := strings.ToLower(rs.UID)
		if id == "" {
			id = strings.ToLower(rs.Name)
		}
		if id == "" {
			continue
		}
		if _, err := s.res.ExecContext(ctx, id, r.time, m.Seq); err != nil {
			return err
		}
		// Name fragments search names and the last segment of ids
		// (bucket-name, i-0abc, web-01): trigrams of whole ids would make
		// every "arn:aws:" a posting list of the whole index.
		for _, part := range []string{rs.Name, lastSegment(rs.UID)} {
			if part != "" && !strings.Contains(text.String(), part) {
				text.WriteString(part)
				text.WriteByte('\n')
			}
		}
	}
	if text.Len() > 0 {
		if _, err := s.fts.ExecContext(ctx, m.Seq, text.String()); err != nil {
			return err
		}
	}
	return nil
}

// lastSegment is what follows an id's last '/' or ':'.
func lastSegment(id string) string {
	return id[strings.LastIndexAny(id, "/:")+1:]
}

// decodeEvent reads the members of an event the index uses, validating
// the whole in one pass (jsonscan) and decoding only those: raw_data, the
// unmapped fields and the rest are skipped, not decoded (decoding whole
// events with encoding/json was half of indexing's time).
func decodeEvent(data []byte, drift bool) (*ocsf.Event, error) {
	e := &ocsf.Event{}
	err := jsonscan.ValidMembers(data, func(name, v []byte) error {
		var dst any
		switch string(name) {
		case `"metadata"`:
			dst = &e.Metadata
		case `"time"`:
			dst = &e.Time
		case `"class_uid"`:
			dst = &e.ClassUID
		case `"activity_id"`:
			dst = &e.ActivityID
		case `"activity_name"`:
			dst = &e.ActivityName
		case `"status_id"`:
			dst = &e.StatusID
		case `"severity"`:
			dst = &e.Severity
		case `"actor"`:
			dst = &e.Actor
		case `"api"`:
			dst = &e.API
		case `"cloud"`:
			dst = &e.Cloud
		case `"resources"`:
			dst = &e.Resources
		case `"enrichments"`:
			dst = &e.Enrichments
		case `"finding_info"`:
			dst = &e.FindingInfo
		case `"unmapped"`:
			if drift {
				dst = &e.Unmapped
			}
		}
		if dst == nil {
			return nil
		}
		return json.Unmarshal(v, dst)
	})
	return e, err
}

// kindOf says what a subject carries: "event", "drift" or "" (dead
// letters, attestations, run records: not changes).
func kindOf(subject string) string {
	switch {
	case strings.HasPrefix(subject, "audit.drift."):
		return "drift"
	case strings.HasPrefix(subject, "audit.deadletter."), strings.HasPrefix(subject, "audit.attest."), !strings.HasPrefix(subject, "audit."):
		return ""
	}
	return "event"
}

func (s *stmts) applyDrift(ctx context.Context, seq uint64, f *ocsf.Event) error {
	var d struct {
		BestRun   string `json:"best_run"`
		Workspace string `json:"workspace"`
		DriftType string `json:"drift_type"`
	}
	if raw, ok := f.Unmapped["trailkeeper"]; ok {
		_ = json.Unmarshal(raw, &d)
	}
	typ, title := d.DriftType, ""
	if f.FindingInfo != nil {
		title = f.FindingInfo.Title
		if typ == "" && len(f.FindingInfo.Types) > 0 {
			typ = f.FindingInfo.Types[0]
		}
	}
	resource := ""
	if len(f.Resources) > 0 {
		resource = f.Resources[0].UID
	}
	cloud, account, _ := where(f)
	t := f.Time
	if err := s.changeTime.QueryRowContext(ctx, f.Metadata.CorrelationUID).Scan(&t); err != nil && err != sql.ErrNoRows {
		return err
	}
	_, err := s.drift.ExecContext(ctx, f.Metadata.UID, seq, f.Metadata.CorrelationUID, t, f.Time, typ, f.Severity,
		cloud, account, resource, d.BestRun, d.Workspace, title)
	return err
}

func resourcesJSON(rs []Resource) string {
	if len(rs) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(rs)
	return string(b)
}

// rowOf reads what the index keeps of an event.
func rowOf(e *ocsf.Event) row {
	r := row{uid: e.Metadata.UID, time: e.Time, outcome: outcome(e), mutating: mutating(e)}
	r.cloud, r.account, r.region = where(e)
	r.actor, r.actorName, r.actorType = actorOf(e)
	if e.API != nil {
		r.action = e.API.Operation
		if e.API.Service != nil {
			r.service = e.API.Service.Name
		}
	}
	if r.action == "" {
		r.action = e.ActivityName
	}
	for _, rd := range e.Resources {
		r.resources = append(r.resources, Resource{UID: rd.UID, Name: rd.Name, Type: rd.Type})
	}
	for _, en := range e.Enrichments {
		if en.Name != "iac.run" {
			continue
		}
		var l struct {
			RunKey     string  `json:"run_key"`
			Band       string  `json:"band"`
			Confidence float64 `json:"confidence"`
		}
		if json.Unmarshal(en.Data, &l) == nil {
			r.runKey, r.band, r.confidence = l.RunKey, l.Band, l.Confidence
		}
	}
	return r
}

func where(e *ocsf.Event) (cloud, account, region string) {
	if e.Cloud == nil {
		return "", "", ""
	}
	cloud = strings.ToLower(e.Cloud.Provider)
	if e.Cloud.Account != nil {
		account = e.Cloud.Account.UID
	}
	return cloud, account, e.Cloud.Region
}

// mutating: a change, by ocsf's one definition (not a read, a sign-in or
// a credential exchange). A failed write is still an attempt to change,
// which on-call wants to see; the outcome column tells them apart.
func mutating(e *ocsf.Event) bool { return e.IsChange() }

func outcome(e *ocsf.Event) string {
	switch e.StatusID {
	case 1:
		return "success"
	case 2:
		return "failure"
	}
	return "unknown"
}

var assumedRoleRE = regexp.MustCompile(`^arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/(.+)$`)

// actorOf normalizes who acted: the principal (an assumed role's role
// ARN, not its per-session ARN, so that every session of a role is one
// actor), a name (the session or display name), and a type.
func actorOf(e *ocsf.Event) (id, name, typ string) {
	if e.Actor == nil {
		return "", "", ""
	}
	a := e.Actor
	if u := a.User; u != nil {
		id, name = first(u.UID, u.EmailAddr, u.Name, a.AppUID), first(u.Name, u.EmailAddr)
		typ = actorType(u.Type)
		if m := assumedRoleRE.FindStringSubmatch(u.UID); m != nil {
			id, name, typ = "arn:"+m[1]+":iam::"+m[2]+":role/"+m[3], m[4], "role"
		}
		if name == id {
			name = ""
		}
		return id, name, typ
	}
	if a.AppUID != "" || a.AppName != "" {
		id := first(a.AppUID, a.AppName)
		if a.AppName != id {
			name = a.AppName
		}
		return id, name, "app"
	}
	return "", "", ""
}

func actorType(t string) string {
	switch t {
	case "AssumedRole", "Role":
		return "role"
	case "IAMUser", "User", "FederatedUser", "IdentityCenterUser":
		return "user"
	case "Root":
		return "root"
	case "AWSService", "AWSAccount":
		return "service"
	case "ServiceAccount":
		return "service_account"
	case "Application", "ServicePrincipal", "App":
		return "app"
	case "":
		return "unknown"
	}
	return strings.ToLower(t)
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
