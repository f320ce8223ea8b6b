package index

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Query selects changes. Zero fields do not filter.
type Query struct {
	// Resource matches an exact id, an id prefix (both case-insensitive),
	// or a fragment (3 characters or more) of a resource id or name.
	Resource string
	// Actor matches a principal (role ARN, user ARN, e-mail, app id) or
	// its prefix, or a session or user name.
	Actor    string
	Run      string
	Cloud    string
	Account  string
	Since    time.Time
	Until    time.Time // exclusive
	Mutating *bool
	Outcome  string // success, failure
	Band     string // attested, inferred, ambiguous, unexplained
	Drift    bool   // only changes a drift finding names
	// Ascending lists oldest first (a run's timeline); the default is
	// newest first.
	Ascending bool
	Limit     int    // default 100, at most 1000
	Cursor    string // Next of the previous page
}

// Change is one indexed change.
type Change struct {
	Seq       uint64     `json:"seq"`
	UID       string     `json:"uid"`
	Time      time.Time  `json:"time"`
	Cloud     string     `json:"cloud"`
	Account   string     `json:"account,omitempty"`
	Region    string     `json:"region,omitempty"`
	Actor     Actor      `json:"actor"`
	Action    string     `json:"action"`
	Service   string     `json:"service,omitempty"`
	Outcome   string     `json:"outcome"`
	Mutating  bool       `json:"mutating"`
	Resources []Resource `json:"resources"`
	Link      Link       `json:"link"`
	Drift     []DriftRef `json:"drift,omitempty"`
	// OutOfPlan: a drift finding says the run's plan does not list it.
	OutOfPlan bool   `json:"out_of_plan,omitempty"`
	Leaf      *int64 `json:"archive_leaf,omitempty"`
}

// Actor is who made a change.
type Actor struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
}

// Link is a change's IaC run, if any. Band is "unexplained" for a
// successful change no run explains, "" for reads and failures that no
// run claimed.
type Link struct {
	RunKey     string  `json:"run_key,omitempty"`
	Band       string  `json:"band,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
}

// DriftRef names a drift finding about a change.
type DriftRef struct {
	UID  string `json:"uid"`
	Type string `json:"type"`
}

// Page is one page of a list; Next is empty on the last.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// ParamError names the query parameter that is wrong.
type ParamError struct{ Param, Msg string }

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

func limit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}

// cursor is (time, key) of the last row of a page.
func encodeCursor(t int64, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t, 10) + ":" + key))
}

func decodeCursor(s string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		ts, key, ok := strings.Cut(string(b), ":")
		var t int64
		if t, err = strconv.ParseInt(ts, 10, 64); err == nil && ok {
			return t, key, nil
		}
	}
	return 0, "", &ParamError{"cursor", "not a cursor this server issued"}
}

const changeCols = `c.seq, c.uid, c.time, c.cloud, c.account, c.region, c.actor, c.actor_name, c.actor_type, c.action, c.service,
	c.outcome, c.mutating, c.run_key, c.band, c.confidence, c.resources,
	COALESCE(c.leaf, (SELECT s.first + c.seq - s.first_seq FROM segments s WHERE s.contiguous AND s.last_seq >= c.seq AND s.first_seq <= c.seq ORDER BY s.last_seq LIMIT 1))`

// Changes lists changes, sorted by time.
func (ix *Index) Changes(ctx context.Context, q Query) (Page[Change], error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	// A resource search drives the query from its matches (few, as a
	// rule), not from a scan of every change in time order.
	from := `changes c`
	if r := strings.TrimSpace(q.Resource); r != "" {
		lr := strings.ToLower(r)
		sub := `SELECT seq FROM res WHERE rid >= ? AND rid < ?`
		args = append(args, lr, lr+"\U0010FFFF")
		if fragment(r) {
			sub += ` UNION SELECT rowid FROM res_fts WHERE res_fts MATCH ?`
			args = append(args, `"`+strings.ReplaceAll(r, `"`, `""`)+`"`)
		}
		from = `(` + sub + `) m CROSS JOIN changes c ON c.seq = m.seq`
	}
	if a := strings.TrimSpace(q.Actor); a != "" {
		cond, a, err := ix.actorCond(ctx, a)
		if err != nil {
			return Page[Change]{}, err
		}
		add(cond, a...)
	}
	if q.Run != "" {
		add(`c.run_key = ? AND c.run_key <> ''`, q.Run) // <> '': the partial index applies
	}
	if q.Cloud != "" {
		add(`c.cloud = ?`, strings.ToLower(q.Cloud))
	}
	if q.Account != "" {
		add(`c.account = ?`, q.Account)
	}
	if !q.Since.IsZero() {
		add(`c.time >= ?`, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		add(`c.time < ?`, q.Until.UnixMilli())
	}
	if q.Mutating != nil {
		add(`c.mutating = ?`, *q.Mutating)
	}
	switch q.Outcome {
	case "":
	case "success", "failure", "unknown":
		add(`c.outcome = ?`, q.Outcome)
	default:
		return Page[Change]{}, &ParamError{"outcome", "success, failure or unknown"}
	}
	switch q.Band {
	case "":
	case "attested", "inferred", "ambiguous":
		add(`c.band = ?`, q.Band)
	case "unexplained":
		add(`(c.band = 'unexplained' OR (c.band = '' AND c.mutating AND c.outcome = 'success'))`)
	default:
		return Page[Change]{}, &ParamError{"link", "attested, inferred, ambiguous or unexplained"}
	}
	if q.Drift {
		add(`EXISTS (SELECT 1 FROM drift d WHERE d.event_uid = c.uid)`)
	}
	order, cmp := "DESC", "<"
	if q.Ascending {
		order, cmp = "ASC", ">"
	}
	if q.Cursor != "" {
		t, key, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page[Change]{}, err
		}
		seq, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return Page[Change]{}, &ParamError{"cursor", "not a cursor this server issued"}
		}
		add(`(c.time, c.seq) `+cmp+` (?, ?)`, t, seq)
	}
	n := limit(q.Limit)
	sqlText := `SELECT ` + changeCols + ` FROM ` + from
	if len(where) > 0 {
		sqlText += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sqlText += ` ORDER BY c.time ` + order + `, c.seq ` + order + ` LIMIT ?`
	args = append(args, n+1)
	rows, err := ix.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return Page[Change]{}, fmt.Errorf("index: %w", err)
	}
	items, err := scanChanges(rows)
	if err != nil {
		return Page[Change]{}, err
	}
	var p Page[Change]
	if len(items) > n {
		items = items[:n]
		last := items[n-1]
		p.Next = encodeCursor(last.Time.UnixMilli(), strconv.FormatUint(last.Seq, 10))
	}
	if err := ix.attachDrift(ctx, items); err != nil {
		return Page[Change]{}, err
	}
	p.Items = items
	return p, nil
}

// actorCond resolves an actor search (a principal, its prefix, or a
// session or user name) in the small actors table, so that the change
// list is, in the usual case of one principal, a walk of its time index.
func (ix *Index) actorCond(ctx context.Context, a string) (string, []any, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT DISTINCT actor FROM actors WHERE actor = ? OR actor LIKE ? ESCAPE '\' LIMIT 101`, a, likePrefix(a))
	if err != nil {
		return "", nil, fmt.Errorf("index: %w", err)
	}
	var principals []any
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return "", nil, fmt.Errorf("index: %w", err)
		}
		principals = append(principals, p)
	}
	rows.Close()
	if len(principals) > 100 {
		return "", nil, &ParamError{"actor", "matches more than 100 principals; be more specific"}
	}
	var named bool
	if err := ix.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM actors WHERE name = ?)`, a).Scan(&named); err != nil {
		return "", nil, fmt.Errorf("index: %w", err)
	}
	var conds []string
	var args []any
	switch len(principals) {
	case 0:
	case 1:
		conds, args = append(conds, `c.actor = ?`), principals
	default:
		conds, args = append(conds, `c.actor IN (?`+strings.Repeat(",?", len(principals)-1)+`)`), principals
	}
	if named || len(conds) == 0 {
		conds, args = append(conds, `c.actor_name = ?`), append(args, a)
	}
	return "(" + strings.Join(conds, " OR ") + ")", args, nil
}

// fragment: a search that may be part of a name, not an id or its
// prefix (ids have ':' or '/'); at least 3 characters, a trigram. FTS5's
// query parser ends a string at NUL, so such a search is an id search.
func fragment(s string) bool {
	return len([]rune(s)) >= 3 && !strings.ContainsAny(s, ":/\x00")
}

// likePrefix is a LIKE pattern for a prefix, its wildcards escaped.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s) + "%"
}

func scanChanges(rows *sql.Rows) ([]Change, error) {
	defer rows.Close()
	items := []Change{}
	for rows.Next() {
		var c Change
		var ms int64
		var res string
		var leaf sql.NullInt64
		if err := rows.Scan(&c.Seq, &c.UID, &ms, &c.Cloud, &c.Account, &c.Region, &c.Actor.ID, &c.Actor.Name, &c.Actor.Type,
			&c.Action, &c.Service, &c.Outcome, &c.Mutating, &c.Link.RunKey, &c.Link.Band, &c.Link.Confidence, &res, &leaf); err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		c.Time = time.UnixMilli(ms).UTC()
		if err := json.Unmarshal([]byte(res), &c.Resources); err != nil {
			return nil, fmt.Errorf("index: resources of %s: %w", c.UID, err)
		}
		if c.Link.Band == "" && c.Mutating && c.Outcome == "success" {
			c.Link.Band = "unexplained"
		}
		if leaf.Valid {
			c.Leaf = &leaf.Int64
		}
		items = append(items, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return items, nil
}

// attachDrift fills each change's drift findings.
func (ix *Index) attachDrift(ctx context.Context, items []Change) error {
	if len(items) == 0 {
		return nil
	}
	at := make(map[string]int, len(items))
	args := make([]any, len(items))
	for i, c := range items {
		at[c.UID], args[i] = i, c.UID
	}
	rows, err := ix.db.QueryContext(ctx, `SELECT event_uid, uid, type FROM drift WHERE event_uid IN (?`+strings.Repeat(",?", len(items)-1)+`) ORDER BY found`, args...)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev string
		var d DriftRef
		if err := rows.Scan(&ev, &d.UID, &d.Type); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		c := &items[at[ev]]
		c.Drift = append(c.Drift, d)
		if d.Type == "OUT_OF_PLAN" {
			c.OutOfPlan = true
		}
	}
	return rows.Err()
}

// ErrNotFound says the index has no such row.
var ErrNotFound = errors.New("not in the index")

// Change returns one change by its event uid.
func (ix *Index) Change(ctx context.Context, uid string) (Change, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT `+changeCols+` FROM changes c WHERE c.uid = ?`, uid)
	if err != nil {
		return Change{}, fmt.Errorf("index: %w", err)
	}
	items, err := scanChanges(rows)
	if err != nil {
		return Change{}, err
	}
	if len(items) == 0 {
		return Change{}, ErrNotFound
	}
	if err := ix.attachDrift(ctx, items); err != nil {
		return Change{}, err
	}
	return items[0], nil
}

// Drift is one drift finding.
type Drift struct {
	UID       string    `json:"uid"`
	Seq       uint64    `json:"seq"`
	EventUID  string    `json:"event_uid"`
	Time      time.Time `json:"time"`  // of the change
	Found     time.Time `json:"found"` // when the detector judged it
	Type      string    `json:"type"`
	Severity  string    `json:"severity,omitempty"`
	Cloud     string    `json:"cloud"`
	Account   string    `json:"account,omitempty"`
	Resource  string    `json:"resource,omitempty"`
	RunKey    string    `json:"run_key,omitempty"`
	Workspace string    `json:"workspace,omitempty"`
	Title     string    `json:"title"`
}

// DriftQuery selects drift findings.
type DriftQuery struct {
	Since, Until time.Time
	Cloud        string
	Account      string
	Type         string
	// Resources, if set, keeps findings on these resources (exact ids).
	Resources []string
	Limit     int
	Cursor    string
}

// Drift lists drift findings, newest change first.
func (ix *Index) Drift(ctx context.Context, q DriftQuery) (Page[Drift], error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if !q.Since.IsZero() {
		add(`time >= ?`, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		add(`time < ?`, q.Until.UnixMilli())
	}
	if q.Cloud != "" {
		add(`cloud = ?`, strings.ToLower(q.Cloud))
	}
	if q.Account != "" {
		add(`account = ?`, q.Account)
	}
	if q.Type != "" {
		add(`type = ?`, strings.ToUpper(q.Type))
	}
	if len(q.Resources) > 0 {
		ph := strings.Repeat(",?", len(q.Resources))[1:]
		a := make([]any, len(q.Resources))
		for i, r := range q.Resources {
			a[i] = r
		}
		add(`resource COLLATE NOCASE IN (`+ph+`)`, a...)
	}
	if q.Cursor != "" {
		t, key, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page[Drift]{}, err
		}
		add(`(time, uid) < (?, ?)`, t, key)
	}
	n := limit(q.Limit)
	s := `SELECT uid, seq, event_uid, time, found, type, severity, cloud, account, resource, run_key, workspace, title FROM drift`
	if len(where) > 0 {
		s += ` WHERE ` + strings.Join(where, ` AND `)
	}
	s += ` ORDER BY time DESC, uid DESC LIMIT ?`
	rows, err := ix.db.QueryContext(ctx, s, append(args, n+1)...)
	if err != nil {
		return Page[Drift]{}, fmt.Errorf("index: %w", err)
	}
	defer rows.Close()
	p := Page[Drift]{Items: []Drift{}}
	for rows.Next() {
		var d Drift
		var t, found int64
		if err := rows.Scan(&d.UID, &d.Seq, &d.EventUID, &t, &found, &d.Type, &d.Severity, &d.Cloud, &d.Account, &d.Resource, &d.RunKey, &d.Workspace, &d.Title); err != nil {
			return Page[Drift]{}, fmt.Errorf("index: %w", err)
		}
		d.Time, d.Found = time.UnixMilli(t).UTC(), time.UnixMilli(found).UTC()
		p.Items = append(p.Items, d)
	}
	if err := rows.Err(); err != nil {
		return Page[Drift]{}, fmt.Errorf("index: %w", err)
	}
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		last := p.Items[n-1]
		p.Next = encodeCursor(last.Time.UnixMilli(), last.UID)
	}
	return p, nil
}
