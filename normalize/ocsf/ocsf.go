// Package ocsf holds the part of the OCSF schema (https://schema.ocsf.io)
// that trailkeeper emits, as Go types that encode to valid events.
//
// Field tags: attributes the schema requires are always written; the rest
// are omitted when zero, so an event carries only what the source said.
package ocsf

import (
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// Version is the one place the OCSF version is pinned; it is written to
// metadata.version of every event.
const Version = "1.8.0"

// Classes, categories and the ids that derive from them.
const (
	CategoryFindings    = 2
	CategoryIAM         = 3
	CategoryApplication = 6

	ClassDetectionFinding = 2004
	ClassAccountChange    = 3001
	ClassAuthentication   = 3002
	ClassAPIActivity      = 6003
)

// ClassInfo names a class.
type ClassInfo struct {
	UID, CategoryUID   int
	Name, CategoryName string
}

// Classes we emit.
var Classes = map[int]ClassInfo{
	ClassDetectionFinding: {ClassDetectionFinding, CategoryFindings, "Detection Finding", "Findings"},
	ClassAccountChange:    {ClassAccountChange, CategoryIAM, "Account Change", "Identity & Access Management"},
	ClassAuthentication:   {ClassAuthentication, CategoryIAM, "Authentication", "Identity & Access Management"},
	ClassAPIActivity:      {ClassAPIActivity, CategoryApplication, "API Activity", "Application Activity"},
}

// Activity ids of API Activity.
const (
	ActivityUnknown = 0
	ActivityCreate  = 1
	ActivityRead    = 2
	ActivityUpdate  = 3
	ActivityDelete  = 4
	ActivityOther   = 99
)

// Status ids.
const (
	StatusUnknown = 0
	StatusSuccess = 1
	StatusFailure = 2
)

// Severity ids.
const (
	SeverityInformational = 1
	SeverityLow           = 2
	SeverityMedium        = 3
	SeverityHigh          = 4
)

// Event is one OCSF event of any class we emit. Class-specific attributes
// are set only for their class.
type Event struct {
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name,omitzero"`
	CategoryName string `json:"category_name,omitzero"`
	CategoryUID  int    `json:"category_uid"`
	ClassName    string `json:"class_name,omitzero"`
	ClassUID     int    `json:"class_uid"`
	TypeName     string `json:"type_name,omitzero"`
	TypeUID      int64  `json:"type_uid"`
	SeverityID   int    `json:"severity_id"`
	Severity     string `json:"severity,omitzero"`
	Time         int64  `json:"time"`
	Message      string `json:"message,omitzero"`

	Status       string `json:"status,omitzero"`
	StatusID     int    `json:"status_id,omitzero"`
	StatusCode   string `json:"status_code,omitzero"`
	StatusDetail string `json:"status_detail,omitzero"`

	Actor       *Actor            `json:"actor,omitzero"`
	API         *API              `json:"api,omitzero"`
	Cloud       *Cloud            `json:"cloud,omitzero"`
	SrcEndpoint *NetworkEndpoint  `json:"src_endpoint,omitzero"`
	DstEndpoint *NetworkEndpoint  `json:"dst_endpoint,omitzero"`
	HTTPRequest *HTTPRequest      `json:"http_request,omitzero"`
	Resources   []ResourceDetails `json:"resources,omitzero"`

	// Authentication and Account Change.
	User     *User    `json:"user,omitzero"`
	Session  *Session `json:"session,omitzero"`
	IsMFA    *bool    `json:"is_mfa,omitzero"`
	Service  *Service `json:"service,omitzero"`
	Policies []Policy `json:"policies,omitzero"`
	// Authentication: logon_type_id 2 (interactive) for console sign-ins.
	LogonTypeID int    `json:"logon_type_id,omitzero"`
	LogonType   string `json:"logon_type,omitzero"`

	// Detection Finding.
	FindingInfo  *FindingInfo `json:"finding_info,omitzero"`
	ConfidenceID int          `json:"confidence_id,omitzero"`
	Confidence   string       `json:"confidence,omitzero"`
	ConfScore    int          `json:"confidence_score,omitzero"`
	IsAlert      *bool        `json:"is_alert,omitzero"`

	Metadata    Metadata     `json:"metadata"`
	Enrichments []Enrichment `json:"enrichments,omitzero"`
	RawData     string       `json:"raw_data,omitzero"`
	RawDataHash *Fingerprint `json:"raw_data_hash,omitzero"`
	RawDataSize int64        `json:"raw_data_size,omitzero"`
	Unmapped    Unmapped     `json:"unmapped,omitzero"`
}

// Unmapped keeps source fields with no OCSF home, as the source wrote them.
type Unmapped map[string]jsontext.Value

// Actor is who did it.
type Actor struct {
	User           *User           `json:"user,omitzero"`
	Session        *Session        `json:"session,omitzero"`
	IDP            *IDP            `json:"idp,omitzero"`
	AppName        string          `json:"app_name,omitzero"`
	AppUID         string          `json:"app_uid,omitzero"`
	Authorizations []Authorization `json:"authorizations,omitzero"`
}

// User is a principal.
type User struct {
	UID         string                   `json:"uid,omitzero"`
	UIDAlt      string                   `json:"uid_alt,omitzero"`
	Name        string                   `json:"name,omitzero"`
	Type        string                   `json:"type,omitzero"`
	TypeID      int                      `json:"type_id,omitzero"`
	EmailAddr   string                   `json:"email_addr,omitzero"`
	Domain      string                   `json:"domain,omitzero"`
	HasMFA      *bool                    `json:"has_mfa,omitzero"`
	Account     *Account                 `json:"account,omitzero"`
	Org         *Organization            `json:"org,omitzero"`
	Groups      []Group                  `json:"groups,omitzero"`
	Credentials []ProgrammaticCredential `json:"programmatic_credentials,omitzero"`
}

// User type ids.
const (
	UserTypeUser    = 1
	UserTypeAdmin   = 2
	UserTypeSystem  = 3
	UserTypeService = 4
	UserTypeOther   = 99
)

// ProgrammaticCredential is an access key, a key id, a token id.
type ProgrammaticCredential struct {
	UID  string `json:"uid,omitzero"`
	Type string `json:"type,omitzero"`
}

// Account is a cloud account, project or subscription.
type Account struct {
	UID    string `json:"uid,omitzero"`
	Name   string `json:"name,omitzero"`
	Type   string `json:"type,omitzero"`
	TypeID int    `json:"type_id,omitzero"`
}

// Account type ids we use.
const (
	AccountAWSIAMUser        = 3
	AccountAWSIAMRole        = 4
	AccountGCP               = 5
	AccountAzureAD           = 6
	AccountAWS               = 10
	AccountGCPProject        = 11
	AccountAzureSubscription = 13
	AccountOther             = 99
)

// Organization is an AWS organization, GCP organization or Azure tenant.
type Organization struct {
	UID    string `json:"uid,omitzero"`
	Name   string `json:"name,omitzero"`
	OUUID  string `json:"ou_uid,omitzero"`
	OUName string `json:"ou_name,omitzero"`
}

// Group is a group or a role.
type Group struct {
	UID  string `json:"uid,omitzero"`
	Name string `json:"name,omitzero"`
	Type string `json:"type,omitzero"`
}

// Session is an authenticated session.
type Session struct {
	UID           string `json:"uid,omitzero"`
	UIDAlt        string `json:"uid_alt,omitzero"`
	Issuer        string `json:"issuer,omitzero"`
	CreatedTime   int64  `json:"created_time,omitzero"`
	ExpiresTime   int64  `json:"expiration_time,omitzero"`
	IsMFA         *bool  `json:"is_mfa,omitzero"`
	CredentialUID string `json:"credential_uid,omitzero"`
	IsRemote      *bool  `json:"is_remote,omitzero"`
}

// IDP is an identity provider.
type IDP struct {
	UID       string `json:"uid,omitzero"`
	Name      string `json:"name,omitzero"`
	TenantUID string `json:"tenant_uid,omitzero"`
	Issuer    string `json:"issuer,omitzero"`
}

// Authorization is one authorization decision.
type Authorization struct {
	Decision string  `json:"decision,omitzero"`
	Policy   *Policy `json:"policy,omitzero"`
}

// API is the call.
type API struct {
	Operation string    `json:"operation"`
	Service   *Service  `json:"service,omitzero"`
	Version   string    `json:"version,omitzero"`
	Request   *Request  `json:"request,omitzero"`
	Response  *Response `json:"response,omitzero"`
	Group     *Group    `json:"group,omitzero"`
}

// Service is a named service.
type Service struct {
	Name    string `json:"name,omitzero"`
	UID     string `json:"uid,omitzero"`
	Version string `json:"version,omitzero"`
}

// Request is the API request; OCSF requires its uid.
type Request struct {
	UID  string         `json:"uid"`
	Data jsontext.Value `json:"data,omitzero"`
}

// Response is the API response.
type Response struct {
	Code         int            `json:"code,omitzero"`
	Error        string         `json:"error,omitzero"`
	ErrorMessage string         `json:"error_message,omitzero"`
	Message      string         `json:"message,omitzero"`
	Data         jsontext.Value `json:"data,omitzero"`
}

// Cloud says where.
type Cloud struct {
	Provider  string        `json:"provider"`
	Region    string        `json:"region,omitzero"`
	Zone      string        `json:"zone,omitzero"`
	Partition string        `json:"cloud_partition,omitzero"`
	Account   *Account      `json:"account,omitzero"`
	Org       *Organization `json:"org,omitzero"`
}

// NetworkEndpoint is a source or destination.
type NetworkEndpoint struct {
	IP       string    `json:"ip,omitzero"`
	Domain   string    `json:"domain,omitzero"`
	Hostname string    `json:"hostname,omitzero"`
	Name     string    `json:"name,omitzero"`
	UID      string    `json:"uid,omitzero"`
	SvcName  string    `json:"svc_name,omitzero"`
	VPCUID   string    `json:"vpc_uid,omitzero"`
	Location *Location `json:"location,omitzero"`
}

// Location is where an endpoint is.
type Location struct {
	City    string `json:"city,omitzero"`
	Country string `json:"country,omitzero"`
	Region  string `json:"region,omitzero"`
}

// HTTPRequest is what OCSF knows of the HTTP layer.
type HTTPRequest struct {
	UserAgent  string `json:"user_agent,omitzero"`
	HTTPMethod string `json:"http_method,omitzero"`
	UID        string `json:"uid,omitzero"`
}

// ResourceDetails is one affected resource.
type ResourceDetails struct {
	UID       string         `json:"uid,omitzero"`
	Name      string         `json:"name,omitzero"`
	Type      string         `json:"type,omitzero"`
	Region    string         `json:"region,omitzero"`
	Partition string         `json:"cloud_partition,omitzero"`
	Owner     *ResourceOwner `json:"owner,omitzero"`
	Group     *Group         `json:"group,omitzero"`
	Data      jsontext.Value `json:"data,omitzero"`
}

// ResourceOwner is the owner of a resource (an OCSF user object).
type ResourceOwner = User

// Policy is an IAM policy.
type Policy struct {
	UID  string         `json:"uid,omitzero"`
	Name string         `json:"name,omitzero"`
	Type string         `json:"type,omitzero"`
	Data jsontext.Value `json:"data,omitzero"`
}

// Metadata describes the event itself.
type Metadata struct {
	UID              string   `json:"uid,omitzero"`
	Version          string   `json:"version"`
	Product          Product  `json:"product"`
	Profiles         []string `json:"profiles,omitzero"`
	EventCode        string   `json:"event_code,omitzero"`
	LogName          string   `json:"log_name,omitzero"`
	LogProvider      string   `json:"log_provider,omitzero"`
	LogVersion       string   `json:"log_version,omitzero"`
	OriginalTime     string   `json:"original_time,omitzero"`
	LoggedTime       int64    `json:"logged_time,omitzero"`
	ProcessedTime    int64    `json:"processed_time,omitzero"`
	CorrelationUID   string   `json:"correlation_uid,omitzero"`
	OriginalEventUID string   `json:"original_event_uid,omitzero"`
	TenantUID        string   `json:"tenant_uid,omitzero"`
	Labels           []string `json:"labels,omitzero"`
}

// Product is the logging product.
type Product struct {
	Name       string   `json:"name,omitzero"`
	VendorName string   `json:"vendor_name,omitzero"`
	Version    string   `json:"version,omitzero"`
	Feature    *Feature `json:"feature,omitzero"`
}

// Feature of a product.
type Feature struct {
	Name string `json:"name,omitzero"`
}

// Enrichment is added context (IaC run links, among others).
type Enrichment struct {
	Name     string         `json:"name"`
	Value    string         `json:"value"`
	Data     jsontext.Value `json:"data"`
	Type     string         `json:"type,omitzero"`
	Provider string         `json:"provider,omitzero"`
}

// Fingerprint is a hash.
type Fingerprint struct {
	AlgorithmID int    `json:"algorithm_id"`
	Algorithm   string `json:"algorithm,omitzero"`
	Value       string `json:"value"`
}

// FindingInfo describes a finding.
type FindingInfo struct {
	UID         string   `json:"uid"`
	Title       string   `json:"title,omitzero"`
	Desc        string   `json:"desc,omitzero"`
	Types       []string `json:"types,omitzero"`
	CreatedTime int64    `json:"created_time,omitzero"`
}

// SetClass fills the classification attributes of e from class and
// activity; names come from the schema's captions.
func (e *Event) SetClass(class, activityID int, activityName string) {
	c := Classes[class]
	e.ClassUID, e.ClassName = c.UID, c.Name
	e.CategoryUID, e.CategoryName = c.CategoryUID, c.CategoryName
	e.ActivityID, e.ActivityName = activityID, activityName
	e.TypeUID = int64(class)*100 + int64(activityID)
	if activityName != "" {
		e.TypeName = typeName(e.TypeUID, c.Name, activityName)
	}
}

var typeNames sync.Map // type_uid → "Class: Activity", made once each

func typeName(typeUID int64, class, activity string) string {
	if v, ok := typeNames.Load(typeUID); ok {
		return v.(string)
	}
	v, _ := typeNames.LoadOrStore(typeUID, class+": "+activity)
	return v.(string)
}

// SeverityName is the caption of a severity id.
func SeverityName(id int) string {
	switch id {
	case SeverityInformational:
		return "Informational"
	case SeverityLow:
		return "Low"
	case SeverityMedium:
		return "Medium"
	case SeverityHigh:
		return "High"
	}
	return "Unknown"
}

// StatusName is the caption of a status id.
func StatusName(id int) string {
	switch id {
	case StatusSuccess:
		return "Success"
	case StatusFailure:
		return "Failure"
	}
	return "Unknown"
}
