package normalize

import (
	"bytes"
	"encoding/json"
)

// Format names the wire shape of one raw record.
type Format string

// The formats we know. FormatUnknown asks Sniff to decide.
const (
	FormatUnknown     Format = ""
	FormatCloudTrail  Format = "cloudtrail"        // one CloudTrail record (S3 file element, EventBridge detail, …)
	FormatLookup      Format = "cloudtrail_lookup" // one LookupEvents result: CloudTrailEvent holds the record as a string
	FormatGCPAudit    Format = "gcp_audit"         // one Cloud Logging LogEntry
	FormatAzureREST   Format = "azure_rest"        // one Activity Log EventData (REST, CLI)
	FormatAzureExport Format = "azure_export"      // one diagnostic-settings export record
)

// Cloud returns the cloud a format belongs to: aws, gcp, azure or unknown.
func (f Format) Cloud() string {
	switch f {
	case FormatCloudTrail, FormatLookup:
		return "aws"
	case FormatGCPAudit:
		return "gcp"
	case FormatAzureREST, FormatAzureExport:
		return "azure"
	}
	return "unknown"
}

// Sniff detects the format of one raw record from its top-level keys. It
// returns FormatUnknown for anything that is not a JSON object of a known
// shape; it never fails otherwise.
func Sniff(raw []byte) Format {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return FormatUnknown
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return FormatUnknown
	}
	has := func(k string) bool { _, ok := keys[k]; return ok }
	switch {
	case has("CloudTrailEvent") || (has("EventId") && has("EventName")):
		return FormatLookup
	case has("eventVersion") || (has("eventSource") && has("eventName")) || (has("eventID") && has("eventTime")):
		return FormatCloudTrail
	case has("protoPayload") || has("logName") || (has("insertId") && (has("jsonPayload") || has("textPayload") || has("resource"))):
		return FormatGCPAudit
	case has("eventDataId") || has("event_data_id") || (has("caller") && has("eventTimestamp")) || has("operationId") || has("operation_id"):
		return FormatAzureREST
	case has("resourceId") && has("operationName") && has("time"):
		return FormatAzureExport
	}
	return FormatUnknown
}
