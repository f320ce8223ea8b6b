package normalize

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// maxWrapDepth bounds unwrapping: SQS holds SNS holds EventBridge holds the
// record; deeper nesting is not a delivery path.
const maxWrapDepth = 5

// unwrap peels single-record envelopes off raw and returns the record, its
// format (hint, or sniffed) and what the envelopes said besides the record
// (an array, outermost first), or nil when there was none.
func unwrap(raw []byte, hint Format) ([]byte, Format, jsontext.Value, error) {
	var f0 Format // sniffed from the keys of the innermost record
	var envs []map[string]jsontext.Value
	for depth := 0; ; depth++ {
		keys := scanKeys(raw)
		wrapped := keys != nil && isEnvelope(keys)
		if keys != nil && (f0 == FormatUnknown || depth > 0) {
			f0 = sniffKeys(keys)
		}
		keys.put()
		if !wrapped {
			break
		}
		kind, inner, rest, err := peel(raw)
		if err != nil {
			return nil, "", nil, err
		}
		if kind == "" {
			break
		}
		if depth == maxWrapDepth {
			return nil, "", nil, errors.New("envelopes nested too deep")
		}
		if rest != nil {
			rest["type"] = quote(kind)
			envs = append(envs, rest)
		}
		raw = inner
	}
	f := hint
	if f == FormatUnknown || f == FormatLookup || len(envs) > 0 {
		f = f0
		if f == FormatUnknown {
			f = Sniff(raw) // malformed JSON: Sniff tries the repair
		}
	}
	if len(envs) == 0 {
		return raw, f, nil, nil
	}
	env, err := json.Marshal(envs, encodeOpts)
	return raw, f, env, err
}

// isEnvelope tells from the top-level keys alone whether peel has work.
func isEnvelope(k topKeys) bool {
	return k["CloudTrailEvent"] || (k["detail-type"] && k["detail"]) || (k["Type"] && k["Message"]) ||
		(k["Body"] && k["MessageId"]) || (k["body"] && k["messageId"]) ||
		(k["message"] && (k["subscription"] || k["ackId"])) || (k["data"] && (k["messageId"] || k["message_id"]))
}

// peel recognizes one envelope around raw. kind is "" when raw is not one.
func peel(raw []byte) (kind string, inner []byte, rest map[string]jsontext.Value, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return "", nil, nil, nil
	}
	var m map[string]jsontext.Value
	if json.Unmarshal(raw, &m, decodeOpts) != nil {
		return "", nil, nil, nil // not JSON: the mapper says why
	}
	str := func(k string) (string, bool) {
		v, ok := m[k]
		if !ok || len(v) == 0 || v[0] != '"' {
			return "", false
		}
		return stringOf(v), true
	}
	without := func(k string) map[string]jsontext.Value { delete(m, k); return m }
	switch {
	case isObject(m["CloudTrailEvent"]) || has(m, "CloudTrailEvent"):
		s, ok := str("CloudTrailEvent")
		if !ok {
			return "", nil, nil, errors.New("LookupEvents result: CloudTrailEvent is not a string")
		}
		// The other fields of a LookupEvents result repeat the record.
		return "lookup_events", []byte(s), nil, nil
	case has(m, "detail-type") && isObject(m["detail"]):
		d := m["detail"]
		return "eventbridge", d, without("detail"), nil
	case stringIs(m["Type"], "Notification") && has(m, "Message"):
		s, _ := str("Message")
		return "sns", []byte(s), without("Message"), nil
	case (has(m, "Body") && has(m, "MessageId")) || (has(m, "body") && has(m, "messageId") && has(m, "receiptHandle")):
		key := "Body"
		if !has(m, key) {
			key = "body"
		}
		s, _ := str(key)
		return "sqs", []byte(s), without(key), nil
	case isObject(m["message"]) && (has(m, "subscription") || has(m, "ackId")):
		var msg map[string]jsontext.Value
		if err := json.Unmarshal(m["message"], &msg, decodeOpts); err != nil {
			return "", nil, nil, err
		}
		data, err := pubsubData(msg)
		if err != nil {
			return "", nil, nil, err
		}
		delete(msg, "data")
		m["message"], _ = json.Marshal(msg, encodeOpts)
		return "pubsub", data, m, nil
	case has(m, "data") && (has(m, "messageId") || has(m, "message_id")) && (has(m, "publishTime") || has(m, "publish_time")):
		data, err := pubsubData(m)
		if err != nil {
			return "", nil, nil, err
		}
		return "pubsub", data, without("data"), nil
	}
	return "", nil, nil, nil
}

func pubsubData(msg map[string]jsontext.Value) ([]byte, error) {
	s := stringOf(msg["data"])
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.URLEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("Pub/Sub message data is not base64: %w", err)
		}
	}
	return b, nil
}

func has(m map[string]jsontext.Value, k string) bool { _, ok := m[k]; return ok }

func isObject(v jsontext.Value) bool { return len(v) > 0 && v[0] == '{' }

func stringIs(v jsontext.Value, s string) bool { return stringOf(v) == s && len(v) > 0 && v[0] == '"' }

// Raw is one record found in a document, with the format its container
// implies (FormatUnknown when it implies none).
type Raw struct {
	Bytes  []byte
	Format Format
	Line   int // 1-based line of a JSON Lines record, else 0
}

// containers are the members that hold many records, and what they hold.
var containers = []struct {
	key string
	f   Format
}{
	{"Records", FormatCloudTrail},  // CloudTrail log file
	{"records", FormatAzureExport}, // diagnostic-settings export (storage, Event Hub)
	{"value", FormatAzureREST},     // Activity Log REST page
	{"entries", FormatGCPAudit},    // entries.list response
	{"Events", FormatLookup},       // LookupEvents response
	{"Messages", FormatUnknown},    // SQS ReceiveMessage response
	{"receivedMessages", FormatUnknown},
}

// Split returns the records of one JSON document: the elements of a
// container (Records, records, value, entries, logEvents messages, SQS or
// Pub/Sub pull responses) or of a top-level array, else the document
// itself as one record. A CloudTrail digest file gives ErrDigest.
func Split(doc []byte) ([]Raw, error) {
	doc = bytes.TrimSpace(doc)
	if len(doc) == 0 {
		return nil, nil
	}
	if !jsontext.Value(doc).IsValid() {
		// Diagnostic exports write single quotes and raw newlines.
		fixed, ok := repairJSON(doc)
		if !ok {
			var v jsontext.Value
			return nil, json.Unmarshal(doc, &v) // says what is wrong
		}
		raws, err := Split(fixed)
		if err == nil && len(raws) == 1 && bytes.Equal(raws[0].Bytes, fixed) {
			raws[0].Bytes = doc // one record: keep its bytes; the mapper repairs it
		} else if err == nil {
			repairs.Add(1)
		}
		return raws, err
	}
	elems := func(arr jsontext.Value, f Format) ([]Raw, error) {
		var items []jsontext.Value
		if err := json.Unmarshal(arr, &items, decodeOpts); err != nil {
			return nil, err
		}
		out := make([]Raw, len(items))
		for i, it := range items {
			out[i] = Raw{Bytes: it, Format: f}
		}
		return out, nil
	}
	if doc[0] == '[' {
		return elems(doc, FormatUnknown)
	}
	var top map[string]jsontext.Value
	if err := json.Unmarshal(doc, &top, decodeOpts); err != nil {
		return nil, err
	}
	for _, c := range containers {
		if arr, ok := top[c.key]; ok && len(arr) > 0 && arr[0] == '[' {
			return elems(arr, c.f)
		}
	}
	if evs, ok := top["logEvents"]; ok { // CloudWatch Logs subscription
		var items []jsontext.Value
		if err := json.Unmarshal(evs, &items, decodeOpts); err != nil {
			return nil, err
		}
		out := make([]Raw, len(items))
		for i, it := range items {
			var ev struct {
				Message string `json:"message"`
			}
			out[i] = Raw{Bytes: it} // no message: keep the item, lose nothing
			if json.Unmarshal(it, &ev) == nil && ev.Message != "" {
				out[i].Bytes = []byte(ev.Message)
			}
		}
		return out, nil
	}
	if Sniff(doc) == FormatDigest {
		return nil, ErrDigest
	}
	return []Raw{{Bytes: doc}}, nil
}

// SplitAny returns the records of a file's content: JSON Lines (one record
// per line, as exports and log sinks write them), or one document as Split
// reads it. Line records carry their 1-based line number in Line.
func SplitAny(content []byte) ([]Raw, error) {
	if oneValue(content) {
		return Split(content)
	}
	return SplitLines(content), nil
}

// SplitLines returns every non-blank line of JSON Lines content as a
// record, with its 1-based line number; a bad line is a bad record, not a
// bad file.
func SplitLines(content []byte) []Raw {
	var out []Raw
	line := 0
	for len(content) > 0 {
		line++
		n := bytes.IndexByte(content, '\n')
		var l []byte
		if n < 0 {
			l, content = content, nil
		} else {
			l, content = content[:n], content[n+1:]
		}
		l = bytes.TrimRight(l, "\r")
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, Raw{Bytes: l, Line: line})
		}
	}
	return out
}

// oneValue reports whether content is a single JSON value (possibly not
// valid: Split then reports why) rather than JSON Lines.
func oneValue(content []byte) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(content), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if _, err := dec.ReadValue(); err != nil {
		return true
	}
	_, err := dec.ReadToken()
	return err == io.EOF
}
