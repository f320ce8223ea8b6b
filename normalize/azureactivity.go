package normalize

import (
	"bytes"
	"cmp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// azFields reads an Azure record whose keys come in camelCase (REST),
// snake_case (Azure CLI) or as the export writes them, and remembers which
// it used so the rest goes to unmapped.
type azFields struct {
	m    map[string]jsontext.Value
	used map[string]bool
}

func (f *azFields) raw(keys ...string) jsontext.Value {
	for _, k := range keys {
		if v, ok := f.m[k]; ok {
			f.used[k] = true
			return v
		}
	}
	return nil
}

// str reads a string, or the value of a REST {value, localizedValue} name.
func (f *azFields) str(keys ...string) string {
	v := f.raw(keys...)
	if len(v) > 0 && v[0] == '{' {
		var value string
		var ignored map[string]jsontext.Value
		_ = fields(v, &ignored, func(name string, v jsontext.Value) (bool, error) {
			if name == "value" {
				value = stringOf(v)
			}
			return true, nil
		})
		return value
	}
	return stringOf(v)
}

// Claim URIs of Entra ID tokens.
const (
	claimOID  = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimName = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimUPN  = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
	claimTID  = "http://schemas.microsoft.com/identity/claims/tenantid"
)

var azLevels = map[string]int{
	"informational": ocsf.SeverityInformational, "verbose": ocsf.SeverityInformational,
	"warning": ocsf.SeverityLow, "error": ocsf.SeverityMedium, "critical": ocsf.SeverityHigh,
}

// mapAzure maps a REST EventData (camelCase or snake_case) or a
// diagnostic-settings export record to the same output.
func mapAzure(raw []byte) (*ocsf.Event, error) {
	f := &azFields{used: make(map[string]bool, 16)}
	// Every member, as slices of raw (Normalize's own copy: it never changes).
	all := func(string, jsontext.Value) (bool, error) { return false, nil }
	if err := members(raw, &f.m, all); err != nil {
		repaired, ok := repairJSON(raw)
		if !ok {
			return nil, err
		}
		f.m = nil
		if err := members(repaired, &f.m, all); err != nil {
			return nil, err
		}
		repairs.Add(1)
	}
	tsText := f.str("eventTimestamp", "event_timestamp", "time", "Time")
	t, err := parseTime(tsText)
	if err != nil {
		return nil, errString("time: " + err.Error())
	}
	op := f.str("operationName", "operation_name", "OperationName")
	if op == "" {
		return nil, errString("operationName is missing")
	}
	resourceID := f.str("resourceId", "resource_id", "ResourceId")
	correlation := f.str("correlationId", "correlation_id")
	resultType := f.str("resultType")
	status := f.str("status")
	if status == "" {
		status = resultType
	}
	callerIP := f.str("callerIpAddress")
	category := f.str("category", "Category")
	u := ocsf.Unmapped{}

	ev := &ocsf.Event{Time: t.UnixMilli(), SeverityID: ocsf.SeverityInformational}
	level := f.str("level", "Level")
	if s, ok := azLevels[strings.ToLower(level)]; ok {
		ev.SeverityID = s
	} else if level != "" {
		u["level"] = quote(level)
	}
	uid := f.str("eventDataId", "event_data_id")
	if uid == "" {
		// Export records have no eventDataId: hash what identifies one.
		uid = shortHash([]byte(strings.Join([]string{
			t.UTC().Format(time.RFC3339Nano), strings.ToLower(resourceID), strings.ToLower(op),
			correlation, resultType, callerIP, category, f.str("resultSignature"),
		}, "|")))
	}
	ev.Metadata = ocsf.Metadata{
		UID:          "azure:" + uid,
		Product:      ocsf.Product{Name: "Activity Log", VendorName: "Microsoft Azure"},
		LogName:      category,
		LogProvider:  "Azure Monitor",
		OriginalTime: tsText,
	}
	if category != "" {
		ev.Metadata.Product.Feature = &ocsf.Feature{Name: category}
	}
	if st, err := parseTime(f.str("submissionTimestamp", "submission_timestamp")); err == nil {
		ev.Metadata.LoggedTime = st.UnixMilli()
	}
	if correlation != "" {
		// The id azurerm sends per process (ARM_CORRELATION_REQUEST_ID): a
		// run marker, so it stays findable under its own name.
		u["correlationId"] = quote(correlation)
	}

	// Who.
	actor, tenant := azActor(f, u)
	ev.Actor = actor

	// What.
	service := f.str("resourceProviderName", "resource_provider_name")
	if service == "" {
		service, _, _ = strings.Cut(op, "/")
	}
	api := &ocsf.API{Operation: op}
	if service != "" {
		api.Service = &ocsf.Service{Name: service}
	}
	reqID := ""
	var hr struct {
		ClientRequestID string                    `json:"clientRequestId"`
		ClientIP        string                    `json:"clientIpAddress"`
		Method          string                    `json:"method"`
		ClientReqSnake  string                    `json:"client_request_id"`
		ClientIPSnake   string                    `json:"client_ip_address"`
		Rest            map[string]jsontext.Value `json:",embed"`
	}
	if v := f.raw("httpRequest", "http_request"); present(v) && json.Unmarshal(v, &hr, decodeOpts) == nil {
		reqID = hr.ClientRequestID + hr.ClientReqSnake
		if callerIP == "" {
			callerIP = hr.ClientIP + hr.ClientIPSnake
		}
		if hr.Method != "" {
			ev.HTTPRequest = &ocsf.HTTPRequest{HTTPMethod: hr.Method}
		}
		keepAll(u, "httpRequest.", hr.Rest)
	}
	if reqID == "" {
		reqID = f.str("operationId", "operation_id")
	} else if opID := f.str("operationId", "operation_id"); opID != "" {
		u["operationId"] = quote(opID)
	}
	if reqID != "" {
		api.Request = &ocsf.Request{UID: reqID}
	}
	ev.API = api
	ev.SrcEndpoint = srcEndpoint(callerIP)
	if ev.SrcEndpoint == nil {
		ev.SrcEndpoint = &ocsf.NetworkEndpoint{SvcName: cmp.Or(service, "Azure")}
	}

	// Where.
	sub := f.str("subscriptionId", "subscription_id")
	if sub == "" {
		if rest, ok := cutPrefixFold(resourceID, "/subscriptions/"); ok {
			sub, _, _ = strings.Cut(rest, "/")
		}
	}
	ev.Cloud = &ocsf.Cloud{Provider: "Azure", Region: f.str("location", "Location")}
	if sub != "" {
		ev.Cloud.Account = &ocsf.Account{UID: sub, Type: "Azure Subscription", TypeID: ocsf.AccountAzureSubscription}
	}
	if t := f.str("tenantId", "tenant_id"); t != "" {
		tenant = t
	}
	if tenant != "" {
		ev.Cloud.Org = &ocsf.Organization{UID: tenant}
		ev.Metadata.TenantUID = tenant
	}
	if resourceID != "" {
		rd := ocsf.ResourceDetails{UID: resourceID, Name: lastSegment(resourceID), Type: f.str("resourceType", "resource_type"), Region: ev.Cloud.Region}
		if rg := f.str("resourceGroupName", "resource_group_name"); rg != "" {
			rd.Group = &ocsf.Group{Name: rg, Type: "Resource Group"}
		}
		ev.Resources = []ocsf.ResourceDetails{rd}
	}

	// How it went.
	sl := strings.ToLower(status)
	failed := sl == "failed" || sl == "failure"
	sub2 := f.str("subStatus", "sub_status", "resultSignature")
	setStatus(ev, failed, status, sub2)
	if desc := f.str("resultDescription", "description"); desc != "" {
		ev.Message = desc
	}

	act := activityOf(lastSegment(op))
	if strings.EqualFold(lastSegment(op), "action") {
		act = ocsf.ActivityOther
	}
	ev.SetClass(ocsf.ClassAPIActivity, act, activityNames[act])

	for k, v := range f.m {
		if !f.used[k] {
			u[k] = v
		}
	}
	ev.Unmapped = u
	return ev, nil
}

// azActor reads caller, claims and identity (an object, a string or {}).
func azActor(f *azFields, u ocsf.Unmapped) (*ocsf.Actor, string) {
	actor := &ocsf.Actor{}
	caller := f.str("caller")
	authzRaw := f.raw("authorization")
	claimsRaw := f.raw("claims")
	if id := f.raw("identity", "Identity"); len(id) > 0 {
		if id[0] == '{' {
			var rest map[string]jsontext.Value
			err := fields(id, &rest, func(name string, v jsontext.Value) (bool, error) {
				switch {
				case name == "authorization" && authzRaw == nil:
					authzRaw = v
				case name == "claims" && claimsRaw == nil:
					claimsRaw = v
				default:
					return false, nil
				}
				return true, nil
			})
			if err == nil {
				keepAll(u, "identity.", rest)
			}
		} else if caller == "" {
			caller = stringOf(id) // the identity as a plain string
		}
	}
	// Only the claims we map are read; the whole token is kept as evidence.
	claims := map[string]string{}
	if present(claimsRaw) {
		u["claims"] = claimsRaw
		var ignored map[string]jsontext.Value
		_ = fields(claimsRaw, &ignored, func(name string, v jsontext.Value) (bool, error) {
			switch name {
			case claimOID, claimName, claimUPN, claimTID, "tid", "appid", "iss":
				var s string
				if ok, err := str(v, &s); ok && err == nil {
					claims[name] = s
				}
			}
			return true, nil
		})
	}
	if present(authzRaw) {
		var action, scope string
		var rest map[string]jsontext.Value
		err := fields(authzRaw, &rest, func(name string, v jsontext.Value) (bool, error) {
			switch name {
			case "action":
				return str(v, &action)
			case "scope":
				return str(v, &scope)
			}
			return false, nil
		})
		if err == nil && action != "" {
			actor.Authorizations = []ocsf.Authorization{{Policy: &ocsf.Policy{Name: action, UID: scope, Type: "Azure RBAC action"}}}
		}
		if err == nil {
			keepAll(u, "authorization.", rest)
		} else {
			u["authorization"] = authzRaw
		}
	}
	if caller == "" {
		// Exports carry no caller: the token's UPN is whom REST calls it.
		caller = claims[claimUPN]
	}
	user := &ocsf.User{Name: caller, UID: claims[claimOID]}
	if user.UID == "" {
		user.UID = caller
	}
	if n := claims[claimName]; user.Name == "" && n != "" {
		user.Name = n
	}
	if isEmail(caller) {
		user.EmailAddr = caller
		user.Type, user.TypeID = "User", ocsf.UserTypeUser
	} else if app := claims["appid"]; app != "" && claims[claimUPN] == "" {
		user.Type, user.TypeID = "ServicePrincipal", ocsf.UserTypeService
	}
	if app := claims["appid"]; app != "" {
		actor.AppUID = app
	}
	tenant := claims[claimTID]
	if tenant == "" {
		tenant = claims["tid"]
	}
	if iss := claims["iss"]; iss != "" {
		actor.IDP = &ocsf.IDP{Name: "Microsoft Entra ID", Issuer: iss, TenantUID: tenant, UID: tenant}
	}
	if user.UID != "" || user.Name != "" {
		actor.User = user
	} else if actor.AppUID == "" {
		actor.AppName = "Azure Resource Manager"
	}
	return actor, tenant
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

var repairs atomic.Int64

// Repairs counts Azure records whose malformed JSON (single quotes, raw
// newlines in strings) was repaired before mapping.
func Repairs() int64 { return repairs.Load() }

// repairJSON fixes what diagnostic exports are known to emit: raw control
// characters inside strings, and single-quoted strings. It returns false
// when the result is still not JSON.
func repairJSON(b []byte) ([]byte, bool) {
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	var quoteCh byte // 0 outside a string, else the quote that opened it
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case quoteCh == 0:
			if c == '\'' {
				quoteCh = '\''
				out.WriteByte('"')
				continue
			}
			if c == '"' {
				quoteCh = '"'
			}
			out.WriteByte(c)
		case c == '\\' && i+1 < len(b):
			if quoteCh == '\'' && b[i+1] == '\'' {
				out.WriteByte('\'')
			} else {
				out.WriteByte(c)
				out.WriteByte(b[i+1])
			}
			i++
		case c == quoteCh:
			quoteCh = 0
			out.WriteByte('"')
		case c == '"': // a double quote inside a single-quoted string
			out.WriteString(`\"`)
		case c == '\n':
			out.WriteString(`\n`)
		case c == '\r':
			out.WriteString(`\r`)
		case c == '\t':
			out.WriteString(`\t`)
		case c < 0x20:
			out.WriteString(`\u00`)
			out.WriteByte("0123456789abcdef"[c>>4])
			out.WriteByte("0123456789abcdef"[c&15])
		default:
			out.WriteByte(c)
		}
	}
	r := out.Bytes()
	return r, jsontext.Value(r).IsValid()
}
