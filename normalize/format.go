package normalize

import "bytes"

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
	FormatDigest      Format = "cloudtrail_digest" // a CloudTrail digest file: not an event
)

// Cloud returns the cloud a format belongs to: aws, gcp, azure or unknown.
func (f Format) Cloud() string {
	switch f {
	case FormatCloudTrail, FormatLookup, FormatDigest:
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
// shape; it never fails otherwise. Envelopes are not formats: Normalize
// unwraps them before sniffing.
func Sniff(raw []byte) Format {
	keys := scanKeys(raw)
	if keys == nil {
		// Diagnostic exports write malformed JSON; sniff the repair.
		fixed, ok := repairJSON(bytes.TrimSpace(raw))
		if !ok {
			return FormatUnknown
		}
		if keys = scanKeys(fixed); keys == nil {
			return FormatUnknown
		}
	}
	defer keys.put()
	return sniffKeys(keys)
}

func sniffKeys(keys topKeys) Format {
	has := func(k string) bool { return keys[k] }
	switch {
	case has("CloudTrailEvent") || (has("EventId") && has("EventName")):
		return FormatLookup
	case has("digestStartTime") && has("logFiles"):
		return FormatDigest
	case has("eventVersion") || has("eventversion") || (has("eventSource") && has("eventName")) || (has("eventID") && has("eventTime")) ||
		(has("eventName") && (has("awsRegion") || has("userIdentity") || has("eventTime"))) || (has("eventsource") && has("eventname")):
		return FormatCloudTrail
	case has("protoPayload") || has("logName") || has("protopayload") || has("logname") || (has("insertId") && (has("jsonPayload") || has("textPayload") || has("resource"))):
		return FormatGCPAudit
	case has("eventDataId") || has("event_data_id") || (has("caller") && has("eventTimestamp")) || has("operationId") || has("operation_id") || has("event_timestamp"):
		return FormatAzureREST
	case (has("resourceId") || has("ResourceId") || has("category")) && (has("operationName") || has("OperationName")) && (has("time") || has("Time")):
		return FormatAzureExport
	}
	return FormatUnknown
}
