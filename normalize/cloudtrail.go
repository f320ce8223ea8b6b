package normalize

import (
	"cmp"
	"errors"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// ctRecord is a CloudTrail record. Fields we map are named; Rest catches
// every other member, which goes to unmapped as written.
type ctRecord struct {
	EventVersion        string                    `json:"eventVersion"`
	UserIdentity        *ctIdentity               `json:"userIdentity"`
	EventTime           string                    `json:"eventTime"`
	EventSource         string                    `json:"eventSource"`
	EventName           string                    `json:"eventName"`
	AWSRegion           string                    `json:"awsRegion"`
	SourceIPAddress     string                    `json:"sourceIPAddress"`
	UserAgent           string                    `json:"userAgent"`
	ErrorCode           string                    `json:"errorCode"`
	ErrorMessage        string                    `json:"errorMessage"`
	RequestParameters   jsontext.Value            `json:"requestParameters"`
	ResponseElements    jsontext.Value            `json:"responseElements"`
	AdditionalEventData jsontext.Value            `json:"additionalEventData"`
	RequestID           string                    `json:"requestID"`
	EventID             string                    `json:"eventID"`
	EventType           string                    `json:"eventType"`
	APIVersion          string                    `json:"apiVersion"`
	RecipientAccountID  string                    `json:"recipientAccountId"`
	EventCategory       string                    `json:"eventCategory"`
	VPCEndpointID       string                    `json:"vpcEndpointId"`
	Resources           jsontext.Value            `json:"resources"`
	TLSDetails          jsontext.Value            `json:"tlsDetails"`
	InsightDetails      jsontext.Value            `json:"insightDetails"`
	Rest                map[string]jsontext.Value `json:",embed"`
}

type ctIdentity struct {
	Type                string                    `json:"type"`
	PrincipalID         string                    `json:"principalId"`
	ARN                 string                    `json:"arn"`
	AccountID           string                    `json:"accountId"`
	AccessKeyID         string                    `json:"accessKeyId"`
	UserName            string                    `json:"userName"`
	InvokedBy           string                    `json:"invokedBy"`
	IdentityProvider    string                    `json:"identityProvider"`
	CredentialID        string                    `json:"credentialId"`
	SessionContext      *ctSessionContext         `json:"sessionContext"`
	OnBehalfOf          *ctOnBehalfOf             `json:"onBehalfOf"`
	WebIDFederationData *ctWebID                  `json:"webIdFederationData"`
	Rest                map[string]jsontext.Value `json:",embed"`
}

type ctSessionContext struct {
	SessionIssuer *ctIssuer                 `json:"sessionIssuer"`
	Attributes    *ctAttributes             `json:"attributes"`
	Rest          map[string]jsontext.Value `json:",embed"`
}

// ctIssuer keeps the session issuer's members as written (they go to
// unmapped as they are); only arn and userName are read.
type ctIssuer struct {
	ARN      string                    `json:"arn"`
	UserName string                    `json:"userName"`
	Rest     map[string]jsontext.Value `json:",embed"`
}

type ctAttributes struct {
	CreationDate     string                    `json:"creationDate"`
	MFAAuthenticated jsontext.Value            `json:"mfaAuthenticated"`
	Rest             map[string]jsontext.Value `json:",embed"`
}

type ctOnBehalfOf struct {
	UserID           string                    `json:"userId"`
	IdentityStoreARN string                    `json:"identityStoreArn"`
	Rest             map[string]jsontext.Value `json:",embed"`
}

type ctWebID struct {
	FederatedProvider string                    `json:"federatedProvider"`
	Rest              map[string]jsontext.Value `json:",embed"`
}

type ctResource struct {
	ARN       string                    `json:"ARN"`
	ARNLower  string                    `json:"arn"`
	AccountID string                    `json:"accountId"`
	AccountLC string                    `json:"accountid"` // one source writes it so
	Type      string                    `json:"type"`
	Rest      map[string]jsontext.Value `json:",embed"`
}

var errNotCloudTrail = errors.New("not a CloudTrail record: eventName and eventTime are required")

// ctDecodeOpts also match keys case-insensitively: some pipelines (Panther,
// Athena exports) lower-case the keys of CloudTrail records and LogEntries.
var ctDecodeOpts = json.JoinOptions(decodeOpts, json.MatchCaseInsensitiveNames(true))

// userTypeIDs maps userIdentity.type to OCSF user type ids.
var userTypeIDs = map[string]int{
	"Root": ocsf.UserTypeAdmin, "IAMUser": ocsf.UserTypeUser, "AssumedRole": ocsf.UserTypeUser,
	"FederatedUser": ocsf.UserTypeUser, "SAMLUser": ocsf.UserTypeUser, "WebIdentityUser": ocsf.UserTypeUser,
	"IdentityCenterUser": ocsf.UserTypeUser, "Directory": ocsf.UserTypeUser,
	"AWSService": ocsf.UserTypeService, "AWSAccount": ocsf.UserTypeOther,
}

// mapCloudTrail maps one CloudTrail record (eventVersion 1.0 to 1.11).
func mapCloudTrail(raw []byte) (*ocsf.Event, error) {
	// The objects every CloudTrail event has, allocated at once.
	blk := new(struct {
		r        ctRecord
		ev       ocsf.Event
		actor    ocsf.Actor
		api      ocsf.API
		service  ocsf.Service
		request  ocsf.Request
		response ocsf.Response
		cloud    ocsf.Cloud
		account  ocsf.Account
		feature  ocsf.Feature
		http     ocsf.HTTPRequest
	})
	r := &blk.r
	if err := decodeCT(raw, r); err != nil {
		return nil, err
	}
	if r.EventTime == "" || r.EventName == "" {
		// Lower-cased keys: decode again, matching names without case.
		*r = ctRecord{}
		if err := json.Unmarshal(raw, r, ctDecodeOpts); err != nil {
			return nil, err
		}
	}
	if present(r.InsightDetails) && r.EventName == "" {
		// Insight events name the API they are about in insightDetails
		// (kept whole in unmapped; the two names are mapped here).
		var in struct {
			EventName   string `json:"eventName"`
			EventSource string `json:"eventSource"`
		}
		if json.Unmarshal(r.InsightDetails, &in) == nil {
			r.EventName, r.EventSource = in.EventName, in.EventSource
		}
	}
	if r.EventName == "" || r.EventTime == "" {
		return nil, errNotCloudTrail
	}
	t, err := parseTime(r.EventTime)
	if err != nil {
		return nil, errors.New("eventTime: " + err.Error())
	}
	// The members without a field are unmapped as they are: the map the
	// decoder filled becomes the event's.
	u := ocsf.Unmapped(r.Rest)
	if u == nil {
		u = make(ocsf.Unmapped, 8)
	}

	ev := &blk.ev
	ev.Time, ev.SeverityID = t.UnixMilli(), ocsf.SeverityInformational
	uid := r.EventID
	if uid == "" { // eventVersion 1.0 records carry no eventID
		uid = shortHash(raw)
	}
	ev.Metadata = ocsf.Metadata{
		UID:          "aws:" + uid,
		Product:      ocsf.Product{Name: "CloudTrail", VendorName: "AWS", Version: r.EventVersion},
		EventCode:    r.EventType,
		LogName:      r.EventCategory,
		LogProvider:  "CloudTrail",
		OriginalTime: r.EventTime,
	}
	if r.EventCategory != "" {
		blk.feature.Name = r.EventCategory
		ev.Metadata.Product.Feature = &blk.feature
	}

	// Who.
	actor := &blk.actor
	var user *ocsf.User
	if id := r.UserIdentity; id != nil {
		user = ctUser(id, u)
		if user.UID != "" || user.Name != "" || user.Account != nil {
			actor.User = user
		}
		actor.AppName = id.InvokedBy
		actor.Session = ctSession(id, u)
		switch {
		case id.IdentityProvider != "":
			actor.IDP = &ocsf.IDP{Name: id.IdentityProvider}
		case id.WebIDFederationData != nil && id.WebIDFederationData.FederatedProvider != "":
			actor.IDP = &ocsf.IDP{Name: id.WebIDFederationData.FederatedProvider}
		}
		if id.WebIDFederationData != nil {
			keepAll(u, "userIdentity.webIdFederationData.", id.WebIDFederationData.Rest)
		}
		if ob := id.OnBehalfOf; ob != nil {
			if ob.IdentityStoreARN != "" {
				if actor.IDP == nil {
					actor.IDP = &ocsf.IDP{}
				}
				actor.IDP.UID = ob.IdentityStoreARN
			}
			if ob.UserID != "" && actor.User != nil && actor.User.UIDAlt == "" {
				actor.User.UIDAlt = ob.UserID
			} else if ob.UserID != "" {
				keep(u, "userIdentity.onBehalfOf.userId", quote(ob.UserID))
			}
			keepAll(u, "userIdentity.onBehalfOf.", ob.Rest)
		}
	}
	if actor.User == nil && actor.Session == nil && actor.AppName == "" {
		// Insight and service events have no caller: the service acted.
		actor.AppName = cmp.Or(r.EventSource, "AWS")
	}
	ev.Actor = actor

	// What.
	api := &blk.api
	api.Operation, api.Version = r.EventName, r.APIVersion
	if r.EventSource != "" {
		blk.service.Name = r.EventSource
		api.Service = &blk.service
	}
	if r.RequestID != "" {
		blk.request.UID = r.RequestID
		api.Request = &blk.request
		if present(r.RequestParameters) {
			api.Request.Data = r.RequestParameters
		}
	} else {
		keep(u, "requestParameters", r.RequestParameters) // OCSF's request needs a uid
	}
	resp := &blk.response
	resp.Error, resp.Message = r.ErrorCode, r.ErrorMessage
	if present(r.ResponseElements) {
		resp.Data = r.ResponseElements
	} else {
		keep(u, "responseElements", r.ResponseElements)
	}
	if resp.Error != "" || resp.Message != "" || resp.Data != nil {
		api.Response = resp
	}
	ev.API = api
	keep(u, "additionalEventData", r.AdditionalEventData)
	keep(u, "insightDetails", r.InsightDetails)

	// Where.
	acct := r.RecipientAccountID
	if acct == "" && r.UserIdentity != nil {
		acct = r.UserIdentity.AccountID
	}
	blk.cloud.Provider, blk.cloud.Region = "AWS", r.AWSRegion
	ev.Cloud = &blk.cloud
	if acct != "" {
		blk.account = ocsf.Account{UID: acct, Type: "AWS Account", TypeID: ocsf.AccountAWS}
		ev.Cloud.Account = &blk.account
	}
	if user != nil {
		ev.Cloud.Partition = arnPartition(user.UID)
	}
	ev.SrcEndpoint = srcEndpoint(r.SourceIPAddress)
	if r.VPCEndpointID != "" {
		if ev.SrcEndpoint == nil {
			ev.SrcEndpoint = &ocsf.NetworkEndpoint{}
		}
		ev.SrcEndpoint.UID = r.VPCEndpointID
	}
	if ev.SrcEndpoint == nil {
		// OCSF requires a source; with no address, the service itself is it.
		ev.SrcEndpoint = &ocsf.NetworkEndpoint{SvcName: cmp.Or(r.EventSource, "AWS")}
	}
	if r.UserAgent != "" {
		blk.http.UserAgent = r.UserAgent
		ev.HTTPRequest = &blk.http
	}
	if present(r.TLSDetails) {
		if host := lookupStr(r.TLSDetails, "clientProvidedHostHeader"); host != "" {
			ev.DstEndpoint = &ocsf.NetworkEndpoint{Hostname: host}
		}
		keep(u, "tlsDetails", r.TLSDetails) // version and cipher have no home in API Activity
	}
	ev.Resources = ctResources(r.Resources, u)

	// How it went.
	failed := r.ErrorCode != "" && r.ErrorCode != "200"
	if r.EventName == "ConsoleLogin" {
		if lookupStr(r.ResponseElements, "ConsoleLogin") == "Failure" {
			failed = true
		}
	}
	setStatus(ev, failed, r.ErrorCode, r.ErrorMessage)

	ctClassify(ev, r, user, u)
	ev.Unmapped = u
	return ev, nil
}

func setStatus(ev *ocsf.Event, failed bool, code, detail string) {
	ev.StatusID = ocsf.StatusSuccess
	if failed {
		ev.StatusID = ocsf.StatusFailure
	}
	ev.Status = ocsf.StatusName(ev.StatusID)
	ev.StatusCode, ev.StatusDetail = code, detail
	ev.Severity = ocsf.SeverityName(ev.SeverityID)
}

func ctUser(id *ctIdentity, u ocsf.Unmapped) *ocsf.User {
	user := &ocsf.User{UID: id.ARN, UIDAlt: id.PrincipalID, Name: id.UserName, Type: id.Type, TypeID: userTypeIDs[id.Type]}
	if id.Type != "" && user.TypeID == 0 && id.Type != "Unknown" {
		user.TypeID = ocsf.UserTypeOther
	}
	if user.Name == "" && id.SessionContext != nil && id.SessionContext.SessionIssuer != nil {
		user.Name = id.SessionContext.SessionIssuer.UserName // the role
	}
	if id.AccountID != "" {
		user.Account = &ocsf.Account{UID: id.AccountID, Type: "AWS Account", TypeID: ocsf.AccountAWS}
	}
	if id.AccessKeyID != "" {
		kind := "AWS Access Key"
		if strings.HasPrefix(id.AccessKeyID, "ASIA") {
			kind = "AWS Temporary Access Key"
		}
		user.Credentials = append(user.Credentials, ocsf.ProgrammaticCredential{UID: id.AccessKeyID, Type: kind})
	}
	if id.CredentialID != "" {
		user.Credentials = append(user.Credentials, ocsf.ProgrammaticCredential{UID: id.CredentialID, Type: "Identity Center Credential"})
	}
	keepAll(u, "userIdentity.", id.Rest)
	return user
}

func ctSession(id *ctIdentity, u ocsf.Unmapped) *ocsf.Session {
	sc := id.SessionContext
	if sc == nil {
		return nil
	}
	s := &ocsf.Session{}
	if is := sc.SessionIssuer; is != nil {
		s.Issuer = is.ARN
		// The issuer's other members (type, principalId, accountId, and
		// userName, which names the role) repeat the ARN: kept as written.
		if is.UserName != "" {
			u["userIdentity.sessionContext.sessionIssuer.userName"] = quote(is.UserName)
		}
		keepAll(u, "userIdentity.sessionContext.sessionIssuer.", is.Rest)
	}
	if at := sc.Attributes; at != nil {
		if t, err := parseTime(at.CreationDate); err == nil {
			s.CreatedTime = t.UnixMilli()
		} else {
			keep(u, "userIdentity.sessionContext.attributes.creationDate", quote(at.CreationDate))
		}
		if b, ok := boolOf(at.MFAAuthenticated); ok {
			s.IsMFA = ptr(b)
		}
		keepAll(u, "userIdentity.sessionContext.attributes.", at.Rest)
	}
	// sourceIdentity, ec2RoleDelivery, webIdFederationData…: kept as written.
	keepAll(u, "userIdentity.sessionContext.", sc.Rest)
	if *s == (ocsf.Session{}) {
		return nil
	}
	return s
}

func ctResources(v jsontext.Value, u ocsf.Unmapped) []ocsf.ResourceDetails {
	if !present(v) {
		keep(u, "resources", v)
		return nil
	}
	var items []ctResource
	if json.Unmarshal(v, &items, decodeOpts) != nil {
		keep(u, "resources", v)
		return nil
	}
	var out []ocsf.ResourceDetails
	for _, it := range items {
		arn := it.ARN
		if arn == "" {
			arn = it.ARNLower
		}
		acct := it.AccountID
		if acct == "" {
			acct = it.AccountLC
		}
		rd := ocsf.ResourceDetails{UID: arn, Type: it.Type, Partition: arnPartition(arn), Region: arnRegion(arn)}
		if rd.UID == "" {
			rd.Name = it.Type // OCSF needs a name or a uid
		}
		if acct != "" {
			rd.Owner = &ocsf.User{Account: &ocsf.Account{UID: acct, Type: "AWS Account", TypeID: ocsf.AccountAWS}}
		}
		if len(it.Rest) > 0 {
			rest, _ := json.Marshal(it.Rest, encodeOpts)
			rd.Data = rest
		}
		if rd.UID != "" || rd.Name != "" {
			out = append(out, rd)
		}
	}
	return out
}

// arnPartition is the partition of an ARN (aws, aws-cn, aws-us-gov).
func arnPartition(arn string) string {
	if !strings.HasPrefix(arn, "arn:") {
		return ""
	}
	p, _, _ := strings.Cut(arn[4:], ":")
	return p
}

func arnRegion(arn string) string {
	parts := strings.SplitN(arn, ":", 5)
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

// Account Change activities by eventName (OCSF's CloudTrail mapping sends
// IAM identity management here).
var ctAccountChange = map[string]int{
	"CreateUser": 1, "CreateRole": 1, "CreateLoginProfile": 1,
	"EnableMFADevice": 10, "DeactivateMFADevice": 11,
	"ChangePassword": 3, "UpdateLoginProfile": 3, "DeleteLoginProfile": 6,
	"DeleteUser": 6, "DeleteRole": 6,
	"AttachUserPolicy": 7, "AttachRolePolicy": 7, "AttachGroupPolicy": 7, "PutUserPolicy": 7, "PutRolePolicy": 7, "PutGroupPolicy": 7,
	"DetachUserPolicy": 8, "DetachRolePolicy": 8, "DetachGroupPolicy": 8, "DeleteUserPolicy": 8, "DeleteRolePolicy": 8, "DeleteGroupPolicy": 8,
}

var accountChangeNames = map[int]string{1: "Create", 3: "Password Change", 6: "Delete", 7: "Attach Policy", 8: "Detach Policy", 10: "MFA Factor Enable", 11: "MFA Factor Disable"}

// ctClassify picks the class: Authentication for sign-ins and role
// assumption, Account Change for IAM identity management, API Activity
// for everything else.
func ctClassify(ev *ocsf.Event, r *ctRecord, actorUser *ocsf.User, u ocsf.Unmapped) {
	switch {
	case r.EventSource == "signin.amazonaws.com" || (r.EventSource == "sts.amazonaws.com" && strings.HasPrefix(r.EventName, "AssumeRole")):
		ev.SetClass(ocsf.ClassAuthentication, 1, "Logon")
		ev.User = ctAuthUser(r, actorUser)
		ev.Service = &ocsf.Service{Name: r.EventSource}
		unmapResources(ev, r, u)
		if b, ok := boolOf(lookup(r.AdditionalEventData, "MFAUsed")); ok {
			ev.IsMFA = ptr(b)
		}
		if to := lookupStr(r.AdditionalEventData, "LoginTo"); to != "" {
			if ev.DstEndpoint == nil {
				ev.DstEndpoint = &ocsf.NetworkEndpoint{}
			}
			ev.DstEndpoint.SvcName = to
		}
		if r.EventSource == "signin.amazonaws.com" {
			ev.LogonTypeID, ev.LogonType = 2, "Interactive"
		} else {
			ev.Session = ctAssumedSession(r.ResponseElements)
		}
	case ctAccountChange[r.EventName] != 0 && r.EventSource == "iam.amazonaws.com":
		id := ctAccountChange[r.EventName]
		ev.SetClass(ocsf.ClassAccountChange, id, accountChangeNames[id])
		ev.User = ctTargetUser(r)
		if arn := lookupStr(r.RequestParameters, "policyArn"); arn != "" {
			ev.Policies = []ocsf.Policy{{UID: arn}}
		}
		ev.DstEndpoint = nil // not an attribute of Account Change; tlsDetails is kept
		unmapResources(ev, r, u)
	default:
		act := activityOf(r.EventName)
		ev.SetClass(ocsf.ClassAPIActivity, act, activityNames[act])
	}
}

// unmapResources keeps resources[] as written for classes without a
// resources attribute.
func unmapResources(ev *ocsf.Event, r *ctRecord, u ocsf.Unmapped) {
	if ev.Resources != nil {
		u["resources"] = r.Resources
		ev.Resources = nil
	}
}

// ctAuthUser is who signs in: the role for AssumeRole*, else the caller.
func ctAuthUser(r *ctRecord, actorUser *ocsf.User) *ocsf.User {
	if arn := lookupStr(r.RequestParameters, "roleArn"); arn != "" {
		name := lookupStr(r.RequestParameters, "roleSessionName")
		return &ocsf.User{UID: arn, Name: name, Type: "AssumedRole", TypeID: ocsf.UserTypeUser}
	}
	if actorUser != nil && (actorUser.UID != "" || actorUser.Name != "" || actorUser.Account != nil) {
		return actorUser
	}
	return &ocsf.User{Name: "unknown"} // OCSF requires a user
}

func ctAssumedSession(resp jsontext.Value) *ocsf.Session {
	user, creds := lookup(resp, "assumedRoleUser"), lookup(resp, "credentials")
	arn := lookupStr(user, "arn")
	if arn == "" {
		return nil
	}
	s := &ocsf.Session{UID: arn, UIDAlt: lookupStr(user, "assumedRoleId"), CredentialUID: lookupStr(creds, "accessKeyId")}
	if t, err := parseTime(lookupStr(creds, "expiration")); err == nil {
		s.ExpiresTime = t.UnixMilli()
	}
	return s
}

// ctTargetUser is the identity an IAM call changes.
func ctTargetUser(r *ctRecord) *ocsf.User {
	req, resp := r.RequestParameters, r.ResponseElements
	var user *ocsf.User
	if role := lookupStr(req, "roleName"); role != "" {
		v := lookup(resp, "role")
		user = &ocsf.User{Name: role, UID: lookupStr(v, "arn"), UIDAlt: lookupStr(v, "roleId"), Type: "Role", TypeID: ocsf.UserTypeOther}
	} else {
		v := lookup(resp, "user")
		user = &ocsf.User{Name: lookupStr(req, "userName"), UID: lookupStr(v, "arn"), UIDAlt: lookupStr(v, "userId"), Type: "IAMUser", TypeID: ocsf.UserTypeUser}
	}
	if user.Name == "" && user.UID == "" {
		user.Name = "unknown"
	}
	return user
}
