package normalize

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// OCSFVersion is the one place the schema version is pinned; it is written to
// metadata.version of every event.
const OCSFVersion = "1.8.0"

// Event is one normalized record: the encoded OCSF event plus the few fields
// the pipeline needs for routing without decoding it again.
type Event struct {
	UID     string    // metadata.uid: deterministic, sent as Nats-Msg-Id
	Cloud   string    // aws, gcp or azure
	Account string    // account id, project id or subscription id ("" if unknown)
	Service string    // the cloud service that logged it, e.g. s3.amazonaws.com
	Time    time.Time // when it happened, as the cloud reports it
	JSON    []byte    // the OCSF event, encoded
}

// ErrUnknownFormat is returned for a record whose format cannot be detected.
var ErrUnknownFormat = errors.New("unknown record format")

// Normalize maps one raw record. hint may be FormatUnknown, in which case
// the format is sniffed. See the package doc for the contract.
func Normalize(raw []byte, hint Format) (*Event, error) {
	f := hint
	if f == FormatUnknown {
		f = Sniff(raw)
	}
	var (
		ev  *Event
		err error
	)
	switch f {
	case FormatCloudTrail:
		ev, err = mapCloudTrail(raw)
	case FormatLookup:
		ev, err = mapLookup(raw)
	case FormatGCPAudit:
		ev, err = mapGCP(raw)
	case FormatAzureREST, FormatAzureExport:
		ev, err = mapAzure(raw, f)
	default:
		return nil, ErrUnknownFormat
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	return ev, nil
}

// The mappers below are the minimal stand-in of the pipeline's first
// version: they find the identity, time and routing fields and wrap the raw
// record in a schema-shaped envelope. The full OCSF mappers replace them.

func mapCloudTrail(raw []byte) (*Event, error) {
	var r struct {
		EventID            string `json:"eventID"`
		EventTime          string `json:"eventTime"`
		EventSource        string `json:"eventSource"`
		AWSRegion          string `json:"awsRegion"`
		RecipientAccountID string `json:"recipientAccountId"`
		UserIdentity       struct {
			AccountID string `json:"accountId"`
		} `json:"userIdentity"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	t, err := parseTime(r.EventTime)
	if err != nil {
		return nil, fmt.Errorf("eventTime: %w", err)
	}
	id := r.EventID
	if id == "" { // eventVersion 1.0 records carry no eventID
		id = shortHash(raw)
	}
	acct := r.RecipientAccountID
	if acct == "" {
		acct = r.UserIdentity.AccountID
	}
	return envelope(raw, "aws:"+id, "aws", acct, r.EventSource, r.AWSRegion, "CloudTrail", t)
}

func mapLookup(raw []byte) (*Event, error) {
	var r struct {
		CloudTrailEvent string `json:"CloudTrailEvent"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if r.CloudTrailEvent == "" {
		return nil, errors.New("CloudTrailEvent is missing")
	}
	ev, err := mapCloudTrail([]byte(r.CloudTrailEvent))
	if err != nil {
		return nil, fmt.Errorf("CloudTrailEvent: %w", err)
	}
	return ev, nil
}

func mapGCP(raw []byte) (*Event, error) {
	var r struct {
		InsertID  string `json:"insertId"`
		LogName   string `json:"logName"`
		Timestamp string `json:"timestamp"`
		Resource  struct {
			Labels map[string]string `json:"labels"`
		} `json:"resource"`
		ProtoPayload struct {
			ServiceName string `json:"serviceName"`
		} `json:"protoPayload"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	t, err := parseTime(r.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	if r.InsertID == "" {
		return nil, errors.New("insertId is missing")
	}
	// insertId is unique only within one log and timestamp.
	uid := "gcp:" + r.InsertID + "-" + shortHash([]byte(r.LogName+"|"+r.Timestamp))
	project := r.Resource.Labels["project_id"]
	if project == "" {
		if p, ok := strings.CutPrefix(r.LogName, "projects/"); ok {
			project, _, _ = strings.Cut(p, "/")
		}
	}
	return envelope(raw, uid, "gcp", project, r.ProtoPayload.ServiceName, "", "Cloud Audit Logs", t)
}

func mapAzure(raw []byte, f Format) (*Event, error) {
	var r map[string]any
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			switch v := r[k].(type) {
			case string:
				return v
			case map[string]any: // REST names are {value, localizedValue}
				if s, ok := v["value"].(string); ok {
					return s
				}
			}
		}
		return ""
	}
	t, err := parseTime(str("eventTimestamp", "event_timestamp", "time"))
	if err != nil {
		return nil, fmt.Errorf("time: %w", err)
	}
	resourceID := strings.ToLower(str("resourceId", "resource_id"))
	op := str("operationName", "operation_name")
	var uid string
	if id := str("eventDataId", "event_data_id"); id != "" {
		uid = "azure:" + id
	} else {
		// Export records have no eventDataId: hash the fields that identify one.
		uid = "azure:" + shortHash([]byte(strings.Join([]string{
			t.UTC().Format(time.RFC3339Nano), resourceID, strings.ToLower(op),
			str("correlationId", "correlation_id"), str("resultType", "result_type"),
			str("callerIpAddress", "caller_ip_address"), str("category"),
		}, "|")))
	}
	sub := str("subscriptionId", "subscription_id")
	if sub == "" {
		if p, ok := strings.CutPrefix(resourceID, "/subscriptions/"); ok {
			sub, _, _ = strings.Cut(p, "/")
		}
	}
	service := ""
	if i := strings.Index(strings.ToLower(op), "microsoft."); i >= 0 {
		service, _, _ = strings.Cut(op[i:], "/")
	}
	return envelope(raw, uid, "azure", sub, service, "", "Activity Log", t)
}

func envelope(raw []byte, uid, cloud, account, service, region, product string, t time.Time) (*Event, error) {
	sum := sha256.Sum256(raw)
	type fingerprint struct {
		AlgorithmID int    `json:"algorithm_id"`
		Value       string `json:"value"`
	}
	doc := map[string]any{
		"metadata": map[string]any{
			"uid":      uid,
			"version":  OCSFVersion,
			"profiles": []string{"cloud"},
			"product":  map[string]any{"name": product, "vendor_name": vendors[cloud]},
		},
		"time":          t.UnixMilli(),
		"cloud":         map[string]any{"provider": vendors[cloud], "region": region, "account": map[string]any{"uid": account}},
		"raw_data":      string(raw),
		"raw_data_hash": fingerprint{3, hex.EncodeToString(sum[:])},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return &Event{UID: uid, Cloud: cloud, Account: account, Service: service, Time: t, JSON: b}, nil
}

var vendors = map[string]string{"aws": "AWS", "gcp": "GCP", "azure": "Azure"}

// parseTime accepts the timestamp layouts the clouds write.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05.9999999", "20060102T150405Z"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognized time %q", s)
}

// shortHash is a stable, compact identifier for bytes that carry no id.
func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}
