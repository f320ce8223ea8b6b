package normalize

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// gcpEntry is a Cloud Logging LogEntry; ProtoPayload an AuditLog.
type gcpEntry struct {
	InsertID         string                    `json:"insertId"`
	LogName          string                    `json:"logName"`
	Timestamp        string                    `json:"timestamp"`
	ReceiveTimestamp string                    `json:"receiveTimestamp"`
	Severity         string                    `json:"severity"`
	Resource         jsontext.Value            `json:"resource"`
	ProtoPayload     *gcpAuditLog              `json:"protoPayload"`
	Rest             map[string]jsontext.Value `json:",embed"`
}

type gcpResource struct {
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels"`
	raw    jsontext.Value    // the labels as written
}

type gcpAuditLog struct {
	Type               string                    `json:"@type"`
	ServiceName        string                    `json:"serviceName"`
	MethodName         string                    `json:"methodName"`
	ResourceName       string                    `json:"resourceName"`
	AuthenticationInfo *gcpAuthn                 `json:"authenticationInfo"`
	RequestMetadata    jsontext.Value            `json:"requestMetadata"`
	AuthorizationInfo  []gcpAuthz                `json:"authorizationInfo"`
	Status             *gcpStatus                `json:"status"`
	Request            jsontext.Value            `json:"request"`
	Response           jsontext.Value            `json:"response"`
	ResourceLocation   jsontext.Value            `json:"resourceLocation"`
	Rest               map[string]jsontext.Value `json:",embed"`
}

type gcpAuthn struct {
	PrincipalEmail        string                    `json:"principalEmail"`
	PrincipalSubject      string                    `json:"principalSubject"`
	ServiceAccountKeyName string                    `json:"serviceAccountKeyName"`
	Delegation            jsontext.Value            `json:"serviceAccountDelegationInfo"`
	Rest                  map[string]jsontext.Value `json:",embed"`
}

type gcpRequestMetadata struct {
	CallerIP                string                    `json:"callerIp"`
	CallerSuppliedUserAgent string                    `json:"callerSuppliedUserAgent"`
	CallerNetwork           string                    `json:"callerNetwork"`
	RequestAttributes       *gcpRequestAttributes     `json:"requestAttributes"`
	Rest                    map[string]jsontext.Value `json:",embed"`
}

type gcpRequestAttributes struct {
	ID   string                    `json:"id"`
	Rest map[string]jsontext.Value `json:",embed"`
}

type gcpAuthz struct {
	Resource   string         `json:"resource"`
	Permission string         `json:"permission"`
	Granted    jsontext.Value `json:"granted"`
}

type gcpStatus struct {
	Code    jsontext.Value            `json:"code"`
	Message string                    `json:"message"`
	Rest    map[string]jsontext.Value `json:",embed"`
}

const auditLogType = "type.googleapis.com/google.cloud.audit.AuditLog"

// gcpSeverity maps LogEntry severities to OCSF severity ids.
var gcpSeverity = map[string]int{
	"DEFAULT": 1, "DEBUG": 1, "INFO": 1, "NOTICE": 1,
	"WARNING": ocsf.SeverityLow, "ERROR": ocsf.SeverityMedium, "CRITICAL": ocsf.SeverityHigh, "ALERT": 5, "EMERGENCY": 6,
}

// mapGCP maps one LogEntry holding an AuditLog, of any of the four audit
// logs (activity, data_access, system_event, policy).
func mapGCP(raw []byte) (*ocsf.Event, error) {
	var e gcpEntry
	if err := decodeGCP(raw, &e); err != nil {
		return nil, err
	}
	if e.ProtoPayload == nil || e.ProtoPayload.MethodName == "" {
		// Some exports lower-case the keys: decode again without case.
		e = gcpEntry{}
		if err := json.Unmarshal(raw, &e, ctDecodeOpts); err != nil {
			return nil, err
		}
	}
	p := e.ProtoPayload
	if p == nil || (p.Type != auditLogType && p.Type != "") || p.MethodName == "" {
		return nil, ErrNotAudit
	}
	ts := e.Timestamp
	if ts == "" {
		ts = e.ReceiveTimestamp // when it happened is unknown; when it was logged is next best
	}
	t, err := parseTime(ts)
	if err != nil {
		return nil, errString("timestamp: " + err.Error())
	}
	u := ocsf.Unmapped(e.Rest) // the decoder's map of unknown members becomes the event's
	if u == nil {
		u = make(ocsf.Unmapped, 8)
	}
	keepAll(u, "protoPayload.", p.Rest)
	var res *gcpResource
	if isObject(e.Resource) {
		res = new(gcpResource)
		if decodeResource(e.Resource, res) != nil {
			res = nil
		}
	}
	if res == nil {
		keep(u, "resource", e.Resource)
	}

	ev := &ocsf.Event{Time: t.UnixMilli(), SeverityID: ocsf.SeverityInformational}
	if s, ok := gcpSeverity[e.Severity]; ok {
		ev.SeverityID = s
	} else if e.Severity != "" {
		keep(u, "severity", quote(e.Severity))
	}
	kind := gcpLogKind(e.LogName)
	ev.Metadata = ocsf.Metadata{
		UID:          gcpUID(raw, &e),
		Product:      ocsf.Product{Name: "Cloud Audit Logs", VendorName: "Google Cloud"},
		LogName:      e.LogName,
		LogProvider:  "Cloud Logging",
		OriginalTime: e.Timestamp,
	}
	if kind != "" {
		ev.Metadata.Product.Feature = &ocsf.Feature{Name: kind}
		ev.Metadata.EventCode = kind
	}
	if rt, err := parseTime(e.ReceiveTimestamp); err == nil {
		ev.Metadata.LoggedTime = rt.UnixMilli()
	} else {
		keep(u, "receiveTimestamp", quote(e.ReceiveTimestamp))
	}

	// Who.
	actor := &ocsf.Actor{}
	if a := p.AuthenticationInfo; a != nil {
		user := &ocsf.User{UID: a.PrincipalEmail, Name: a.PrincipalEmail}
		if user.UID == "" {
			user.UID, user.Name = a.PrincipalSubject, a.PrincipalSubject
		} else if a.PrincipalSubject != "" {
			user.UIDAlt = a.PrincipalSubject
		}
		if isEmail(a.PrincipalEmail) {
			user.EmailAddr = a.PrincipalEmail
			user.Type, user.TypeID = "User", ocsf.UserTypeUser
			if strings.HasSuffix(a.PrincipalEmail, ".gserviceaccount.com") {
				user.Type, user.TypeID = "ServiceAccount", ocsf.UserTypeService
			}
		}
		if a.ServiceAccountKeyName != "" {
			user.Credentials = []ocsf.ProgrammaticCredential{{UID: a.ServiceAccountKeyName, Type: "GCP Service Account Key"}}
		}
		if user.UID != "" {
			actor.User = user
		}
		if present(a.Delegation) {
			// The chain of principals that impersonated the caller; the
			// first is the one that started it.
			var first struct {
				FirstParty struct {
					Email string `json:"principalEmail"`
				} `json:"firstPartyPrincipal"`
			}
			var chain []jsontext.Value
			if json.Unmarshal(a.Delegation, &chain) == nil && len(chain) > 0 &&
				json.Unmarshal(chain[0], &first) == nil && first.FirstParty.Email != "" {
				actor.Session = &ocsf.Session{Issuer: first.FirstParty.Email}
			}
			u["protoPayload.authenticationInfo.serviceAccountDelegationInfo"] = a.Delegation
		}
		keepAll(u, "protoPayload.authenticationInfo.", a.Rest)
	}
	for _, az := range p.AuthorizationInfo {
		d := "Denied"
		if g, ok := boolOf(az.Granted); ok && g {
			d = "Allowed"
		} else if !ok {
			d = ""
		}
		actor.Authorizations = append(actor.Authorizations, ocsf.Authorization{
			Decision: d, Policy: &ocsf.Policy{Name: az.Permission, UID: az.Resource, Type: "IAM permission"},
		})
	}
	if actor.User == nil && actor.Session == nil { // VPC-SC denials name nobody
		actor.AppName = cmp.Or(p.ServiceName, "Google Cloud")
	}
	ev.Actor = actor

	// What.
	api := &ocsf.API{Operation: p.MethodName}
	if p.ServiceName != "" {
		api.Service = &ocsf.Service{Name: p.ServiceName}
	}
	var reqID string
	var rm *gcpRequestMetadata
	if isObject(p.RequestMetadata) {
		rm = new(gcpRequestMetadata)
		if decodeRequestMetadata(p.RequestMetadata, rm) != nil {
			rm = nil
		}
	}
	if rm == nil {
		keep(u, "protoPayload.requestMetadata", p.RequestMetadata)
	}
	if rm != nil {
		ev.SrcEndpoint = srcEndpoint(rm.CallerIP)
		if rm.CallerNetwork != "" {
			if ev.SrcEndpoint == nil {
				ev.SrcEndpoint = &ocsf.NetworkEndpoint{}
			}
			ev.SrcEndpoint.VPCUID = rm.CallerNetwork
		}
		if rm.CallerSuppliedUserAgent != "" {
			ev.HTTPRequest = &ocsf.HTTPRequest{UserAgent: rm.CallerSuppliedUserAgent}
		}
		if ra := rm.RequestAttributes; ra != nil {
			reqID = ra.ID
			// reason (request_reason, an IaC run marker), time, auth…
			keepAll(u, "protoPayload.requestMetadata.requestAttributes.", ra.Rest)
		}
		keepAll(u, "protoPayload.requestMetadata.", rm.Rest)
	}
	if ev.SrcEndpoint == nil {
		ev.SrcEndpoint = &ocsf.NetworkEndpoint{SvcName: cmp.Or(p.ServiceName, "Google Cloud")}
	}
	if reqID != "" {
		api.Request = &ocsf.Request{UID: reqID, Data: nonEmpty(p.Request)}
	} else {
		keep(u, "protoPayload.request", p.Request)
	}
	failed := false
	resp := &ocsf.Response{Data: nonEmpty(p.Response)}
	if st := p.Status; st != nil {
		code, _ := strconv.Atoi(strings.Trim(string(st.Code), `"`))
		if code != 0 {
			failed = true
			resp.Code, resp.Error = code, grpcCodes[code]
			ev.StatusCode = strconv.Itoa(code)
		}
		resp.Message = st.Message
		keepAll(u, "protoPayload.status.", st.Rest)
	}
	for _, a := range actor.Authorizations {
		failed = failed || a.Decision == "Denied"
	}
	if resp.Code != 0 || resp.Message != "" || resp.Data != nil {
		api.Response = resp
	}
	ev.API = api

	// Where.
	ev.Cloud = &ocsf.Cloud{Provider: "GCP"}
	gcpScope(ev.Cloud, e.LogName, res)
	var loc struct {
		CurrentLocations []string `json:"currentLocations"`
	}
	if isObject(p.ResourceLocation) && json.Unmarshal(p.ResourceLocation, &loc) == nil && len(loc.CurrentLocations) == 1 {
		ev.Cloud.Region = loc.CurrentLocations[0]
	} else {
		keep(u, "protoPayload.resourceLocation", p.ResourceLocation)
	}
	if p.ResourceName != "" || res != nil {
		rd := ocsf.ResourceDetails{UID: p.ResourceName, Name: lastSegment(p.ResourceName), Region: ev.Cloud.Region}
		if res != nil {
			rd.Type = res.Type
			if present(res.raw) {
				rd.Data = append(append([]byte(`{"labels":`), res.raw...), '}')
			}
		}
		if rd.UID == "" && rd.Name == "" {
			rd.Name = rd.Type
		}
		if rd.UID != "" || rd.Name != "" {
			ev.Resources = []ocsf.ResourceDetails{rd}
		}
	}

	setStatus(ev, failed, ev.StatusCode, resp.Message)
	act := activityOf(lastSegment(p.MethodName))
	ev.SetClass(ocsf.ClassAPIActivity, act, activityNames[act])
	ev.Unmapped = u
	return ev, nil
}

// gcpUID is gcp:<insertId>-<hash of logName and timestamp>, since insertId
// is unique only within one log and timestamp; an entry without insertId
// (seen in exports) is identified by a hash of its bytes.
func gcpUID(raw []byte, e *gcpEntry) string {
	if e.InsertID == "" {
		return "gcp:" + shortHash(raw)
	}
	return "gcp:" + e.InsertID + "-" + shortHash([]byte(e.LogName+"|"+e.Timestamp))
}

// gcpScope fills the account (project, folder, billing account) and org
// from the log name, falling back to the monitored resource's labels.
func gcpScope(c *ocsf.Cloud, logName string, res *gcpResource) {
	kind, rest, _ := strings.Cut(logName, "/")
	id, _, _ := strings.Cut(rest, "/")
	switch kind {
	case "projects":
		c.Account = &ocsf.Account{UID: id, Type: "GCP Project", TypeID: ocsf.AccountGCPProject}
	case "folders":
		c.Account = &ocsf.Account{UID: "folders/" + id, Type: "GCP Folder", TypeID: ocsf.AccountOther}
	case "organizations":
		c.Org = &ocsf.Organization{UID: id}
	case "billingAccounts":
		c.Account = &ocsf.Account{UID: "billingAccounts/" + id, Type: "GCP Billing Account", TypeID: ocsf.AccountOther}
	}
	if res == nil {
		return
	}
	if c.Account == nil && res.Labels["project_id"] != "" {
		c.Account = &ocsf.Account{UID: res.Labels["project_id"], Type: "GCP Project", TypeID: ocsf.AccountGCPProject}
	}
	if c.Org == nil && res.Labels["organization_id"] != "" {
		c.Org = &ocsf.Organization{UID: res.Labels["organization_id"]}
	}
	for _, k := range []string{"location", "region", "zone"} {
		if c.Region == "" && res.Labels[k] != "" {
			c.Region = res.Labels[k]
		}
	}
}

// gcpLogKind is activity, data_access, system_event or policy.
func gcpLogKind(logName string) string {
	_, kind, ok := strings.Cut(logName, "cloudaudit.googleapis.com%2F")
	if !ok {
		_, kind, _ = strings.Cut(logName, "cloudaudit.googleapis.com/")
	}
	return kind
}

var grpcCodes = map[int]string{
	1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS",
	7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE",
	12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}

func lastSegment(s string) string {
	s = strings.TrimRight(s, "/")
	if i := strings.LastIndexAny(s, "/."); i >= 0 {
		return s[i+1:]
	}
	return s
}

func nonEmpty(v jsontext.Value) jsontext.Value {
	if !present(v) {
		return nil
	}
	return v
}

func isEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && strings.Contains(s[at+1:], ".") && !strings.ContainsAny(s, " ,;:<>()[]\\\"")
}

type errString string

func (e errString) Error() string { return string(e) }
