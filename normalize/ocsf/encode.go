package ocsf

import (
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/trailkeeper/trailkeeper/internal/jsonscan"
)

// AppendJSON appends e encoded as JSON to b. It writes what json.Marshal
// writes for Event (the same members, omitted under the same rules; unmapped
// keys sorted), by hand: the mapper runs once per audit record, and
// reflection was a third of its time. TestAppendJSONMatchesMarshal keeps the
// two in step for every field.
//
// Raw values (request and response data, unmapped members) are written
// compacted and must be valid JSON, as decoded input always is.
func (e *Event) AppendJSON(b []byte) []byte {
	w := &writer{b: b}
	w.open()
	w.intReq("activity_id", int64(e.ActivityID))
	w.str("activity_name", e.ActivityName)
	w.str("category_name", e.CategoryName)
	w.intReq("category_uid", int64(e.CategoryUID))
	w.str("class_name", e.ClassName)
	w.intReq("class_uid", int64(e.ClassUID))
	w.str("type_name", e.TypeName)
	w.intReq("type_uid", e.TypeUID)
	w.intReq("severity_id", int64(e.SeverityID))
	w.str("severity", e.Severity)
	w.intReq("time", e.Time)
	w.str("message", e.Message)
	w.str("status", e.Status)
	w.int("status_id", int64(e.StatusID))
	w.str("status_code", e.StatusCode)
	w.str("status_detail", e.StatusDetail)
	if e.Actor != nil {
		w.key("actor")
		w.actor(e.Actor)
	}
	if a := e.API; a != nil {
		w.key("api")
		w.open()
		w.strReq("operation", a.Operation)
		if a.Service != nil {
			w.key("service")
			w.service(a.Service)
		}
		w.str("version", a.Version)
		if r := a.Request; r != nil {
			w.key("request")
			w.open()
			w.strReq("uid", r.UID)
			w.raw("data", r.Data)
			w.close()
		}
		if r := a.Response; r != nil {
			w.key("response")
			w.open()
			w.int("code", int64(r.Code))
			w.str("error", r.Error)
			w.str("error_message", r.ErrorMessage)
			w.str("message", r.Message)
			w.raw("data", r.Data)
			w.close()
		}
		if a.Group != nil {
			w.key("group")
			w.group(a.Group)
		}
		w.close()
	}
	if c := e.Cloud; c != nil {
		w.key("cloud")
		w.open()
		w.strReq("provider", c.Provider)
		w.str("region", c.Region)
		w.str("zone", c.Zone)
		w.str("cloud_partition", c.Partition)
		if c.Account != nil {
			w.key("account")
			w.account(c.Account)
		}
		if c.Org != nil {
			w.key("org")
			w.org(c.Org)
		}
		w.close()
	}
	w.endpoint("src_endpoint", e.SrcEndpoint)
	w.endpoint("dst_endpoint", e.DstEndpoint)
	if h := e.HTTPRequest; h != nil {
		w.key("http_request")
		w.open()
		w.str("user_agent", h.UserAgent)
		w.str("http_method", h.HTTPMethod)
		w.str("uid", h.UID)
		w.close()
	}
	array(w, "resources", e.Resources, func(r *ResourceDetails) {
		w.open()
		w.str("uid", r.UID)
		w.str("name", r.Name)
		w.str("type", r.Type)
		w.str("region", r.Region)
		w.str("cloud_partition", r.Partition)
		if r.Owner != nil {
			w.key("owner")
			w.user(r.Owner)
		}
		if r.Group != nil {
			w.key("group")
			w.group(r.Group)
		}
		w.raw("data", r.Data)
		w.close()
	})
	if e.User != nil {
		w.key("user")
		w.user(e.User)
	}
	if e.Session != nil {
		w.key("session")
		w.session(e.Session)
	}
	w.boolp("is_mfa", e.IsMFA)
	if e.Service != nil {
		w.key("service")
		w.service(e.Service)
	}
	array(w, "policies", e.Policies, w.policy)
	w.int("logon_type_id", int64(e.LogonTypeID))
	w.str("logon_type", e.LogonType)
	if f := e.FindingInfo; f != nil {
		w.key("finding_info")
		w.open()
		w.strReq("uid", f.UID)
		w.str("title", f.Title)
		w.str("desc", f.Desc)
		w.strs("types", f.Types)
		w.int("created_time", f.CreatedTime)
		w.close()
	}
	w.int("confidence_id", int64(e.ConfidenceID))
	w.str("confidence", e.Confidence)
	w.int("confidence_score", int64(e.ConfScore))
	w.boolp("is_alert", e.IsAlert)
	w.key("metadata")
	w.metadata(&e.Metadata)
	array(w, "enrichments", e.Enrichments, func(en *Enrichment) {
		w.open()
		w.strReq("name", en.Name)
		w.strReq("value", en.Value)
		w.key("data")
		if len(en.Data) == 0 {
			w.b = append(w.b, `null`...)
		} else {
			w.b = appendCompact(w.b, en.Data)
		}
		w.str("type", en.Type)
		w.str("provider", en.Provider)
		w.close()
	})
	w.str("raw_data", e.RawData)
	if h := e.RawDataHash; h != nil {
		w.key("raw_data_hash")
		w.open()
		w.intReq("algorithm_id", int64(h.AlgorithmID))
		w.str("algorithm", h.Algorithm)
		w.strReq("value", h.Value)
		w.close()
	}
	w.int("raw_data_size", e.RawDataSize)
	if e.Unmapped != nil {
		w.key("unmapped")
		w.open()
		keys := make([]string, 0, len(e.Unmapped))
		for k := range e.Unmapped {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			w.keyEscaped(k)
			w.b = appendCompact(w.b, e.Unmapped[k])
		}
		w.close()
	}
	w.close()
	return w.b
}

// array writes key: [items…] with each item written by item; a nil slice
// is omitted, as omitzero does.
func array[T any](w *writer, key string, items []T, item func(*T)) {
	if items == nil {
		return
	}
	w.key(key)
	w.b = append(w.b, '[')
	for i := range items {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		item(&items[i])
	}
	w.b = append(w.b, ']')
	w.comma = true
}

type writer struct {
	b     []byte
	comma bool // a member was written: the next needs a comma
}

func (w *writer) open()  { w.b = append(w.b, '{'); w.comma = false }
func (w *writer) close() { w.b = append(w.b, '}'); w.comma = true }

// key writes a member name that needs no escaping (ours are constants).
func (w *writer) key(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	w.comma = true
}

func (w *writer) keyEscaped(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.b = appendString(w.b, k)
	w.b = append(w.b, ':')
	w.comma = true
}

func (w *writer) str(k, v string) {
	if v != "" {
		w.strReq(k, v)
	}
}

func (w *writer) strReq(k, v string) {
	w.key(k)
	w.b = appendString(w.b, v)
}

func (w *writer) int(k string, v int64) {
	if v != 0 {
		w.intReq(k, v)
	}
}

func (w *writer) intReq(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *writer) boolp(k string, v *bool) {
	if v != nil {
		w.key(k)
		w.b = strconv.AppendBool(w.b, *v)
	}
}

func (w *writer) raw(k string, v jsontext.Value) {
	if len(v) > 0 {
		w.key(k)
		w.b = appendCompact(w.b, v)
	}
}

func (w *writer) strs(k string, v []string) {
	if v == nil {
		return
	}
	w.key(k)
	w.b = append(w.b, '[')
	for i, s := range v {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = appendString(w.b, s)
	}
	w.b = append(w.b, ']')
}

func (w *writer) actor(a *Actor) {
	w.open()
	if a.User != nil {
		w.key("user")
		w.user(a.User)
	}
	if a.Session != nil {
		w.key("session")
		w.session(a.Session)
	}
	if p := a.IDP; p != nil {
		w.key("idp")
		w.open()
		w.str("uid", p.UID)
		w.str("name", p.Name)
		w.str("tenant_uid", p.TenantUID)
		w.str("issuer", p.Issuer)
		w.close()
	}
	w.str("app_name", a.AppName)
	w.str("app_uid", a.AppUID)
	array(w, "authorizations", a.Authorizations, func(az *Authorization) {
		w.open()
		w.str("decision", az.Decision)
		if az.Policy != nil {
			w.key("policy")
			w.policy(az.Policy)
		}
		w.close()
	})
	w.close()
}

func (w *writer) user(u *User) {
	w.open()
	w.str("uid", u.UID)
	w.str("uid_alt", u.UIDAlt)
	w.str("name", u.Name)
	w.str("type", u.Type)
	w.int("type_id", int64(u.TypeID))
	w.str("email_addr", u.EmailAddr)
	w.str("domain", u.Domain)
	w.boolp("has_mfa", u.HasMFA)
	if u.Account != nil {
		w.key("account")
		w.account(u.Account)
	}
	if u.Org != nil {
		w.key("org")
		w.org(u.Org)
	}
	array(w, "groups", u.Groups, w.group)
	array(w, "programmatic_credentials", u.Credentials, func(c *ProgrammaticCredential) {
		w.open()
		w.str("uid", c.UID)
		w.str("type", c.Type)
		w.close()
	})
	w.close()
}

func (w *writer) account(a *Account) {
	w.open()
	w.str("uid", a.UID)
	w.str("name", a.Name)
	w.str("type", a.Type)
	w.int("type_id", int64(a.TypeID))
	w.close()
}

func (w *writer) org(o *Organization) {
	w.open()
	w.str("uid", o.UID)
	w.str("name", o.Name)
	w.str("ou_uid", o.OUUID)
	w.str("ou_name", o.OUName)
	w.close()
}

func (w *writer) group(g *Group) {
	w.open()
	w.str("uid", g.UID)
	w.str("name", g.Name)
	w.str("type", g.Type)
	w.close()
}

func (w *writer) session(s *Session) {
	w.open()
	w.str("uid", s.UID)
	w.str("uid_alt", s.UIDAlt)
	w.str("issuer", s.Issuer)
	w.int("created_time", s.CreatedTime)
	w.int("expiration_time", s.ExpiresTime)
	w.boolp("is_mfa", s.IsMFA)
	w.str("credential_uid", s.CredentialUID)
	w.boolp("is_remote", s.IsRemote)
	w.close()
}

func (w *writer) service(s *Service) {
	w.open()
	w.str("name", s.Name)
	w.str("uid", s.UID)
	w.str("version", s.Version)
	w.close()
}

func (w *writer) policy(p *Policy) {
	w.open()
	w.str("uid", p.UID)
	w.str("name", p.Name)
	w.str("type", p.Type)
	w.raw("data", p.Data)
	w.close()
}

func (w *writer) endpoint(k string, n *NetworkEndpoint) {
	if n == nil {
		return
	}
	w.key(k)
	w.open()
	w.str("ip", n.IP)
	w.str("domain", n.Domain)
	w.str("hostname", n.Hostname)
	w.str("name", n.Name)
	w.str("uid", n.UID)
	w.str("svc_name", n.SvcName)
	w.str("vpc_uid", n.VPCUID)
	if l := n.Location; l != nil {
		w.key("location")
		w.open()
		w.str("city", l.City)
		w.str("country", l.Country)
		w.str("region", l.Region)
		w.close()
	}
	w.close()
}

func (w *writer) metadata(m *Metadata) {
	w.open()
	w.str("uid", m.UID)
	w.strReq("version", m.Version)
	w.key("product")
	w.open()
	w.str("name", m.Product.Name)
	w.str("vendor_name", m.Product.VendorName)
	w.str("version", m.Product.Version)
	if f := m.Product.Feature; f != nil {
		w.key("feature")
		w.open()
		w.str("name", f.Name)
		w.close()
	}
	w.close()
	w.strs("profiles", m.Profiles)
	w.str("event_code", m.EventCode)
	w.str("log_name", m.LogName)
	w.str("log_provider", m.LogProvider)
	w.str("log_version", m.LogVersion)
	w.str("original_time", m.OriginalTime)
	w.int("logged_time", m.LoggedTime)
	w.int("processed_time", m.ProcessedTime)
	w.str("correlation_uid", m.CorrelationUID)
	w.str("original_event_uid", m.OriginalEventUID)
	w.str("tenant_uid", m.TenantUID)
	w.strs("labels", m.Labels)
	w.close()
}

// Quote returns s as a JSON string value (s must be valid UTF-8).
func Quote(s string) jsontext.Value { return appendString(make([]byte, 0, len(s)+2), s) }

// SizeHint is about how many bytes AppendJSON writes for e, from the
// parts that scale with the record: raw_data escaped (a byte more per
// quote and backslash), the raw values written again, and a margin for the
// mapped fields, which repeat ARNs, user agents and ids. On the fixtures,
// 9 events in 10 fit: a guess from the record's size alone made a third
// of them regrow their buffer, and regrowth was a third of the bytes the
// mapper allocated.
func (e *Event) SizeHint() int {
	n := len(e.RawData) + strings.Count(e.RawData, `"`) + strings.Count(e.RawData, `\`) + 2048
	n += len(e.Message) + len(e.StatusDetail) // error messages run long
	if a := e.API; a != nil {
		if a.Request != nil {
			n += len(a.Request.Data)
		}
		if a.Response != nil {
			n += len(a.Response.Data) + len(a.Response.Message)
		}
	}
	for k, v := range e.Unmapped {
		n += len(k) + len(v) + 4
	}
	for i := range e.Resources {
		n += len(e.Resources[i].UID) + len(e.Resources[i].Data) + 96
	}
	return n
}

// appendString appends s as a JSON string, escaping what JSON requires
// (quote, backslash, control characters). s must be valid UTF-8, as every
// string of an event is: the mapper rejects records that are not.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape[c] == 0 {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var mustEscape = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = 1
	}
	t['"'], t['\\'] = 1, 1
	return t
}()

const hexDigits = "0123456789abcdef"

// appendCompact appends a valid JSON value without insignificant
// whitespace, so that an event is always one line. Strings are skipped
// whole with IndexByte: they are most of a value's bytes.
func appendCompact(b []byte, v []byte) []byte {
	start := 0
	for i := 0; i < len(v); {
		switch c := v[i]; c {
		case '"':
			i = jsonscan.StringEnd(v, i) + 1
		case ' ', '\t', '\n', '\r':
			b = append(b, v[start:i]...)
			i++
			start = i
		default:
			i++
		}
	}
	return append(b, v[start:]...)
}
