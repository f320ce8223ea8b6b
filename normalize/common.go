package normalize

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/trailkeeper/trailkeeper/normalize/ocsf"
)

// decodeOpts are lenient where real records are sloppy (duplicate keys)
// and strict where leniency would lose bytes (invalid UTF-8 could not be
// kept exactly in raw_data, so such a record is dead-lettered instead).
var decodeOpts = json.JoinOptions(jsontext.AllowDuplicateNames(true))

// encodeOpts make output deterministic (sorted unmapped keys) for golden
// files and stable hashes downstream.
// Input was checked to be valid UTF-8, so encoding need not check again.
var encodeOpts = json.JoinOptions(json.Deterministic(true), jsontext.AllowInvalidUTF8(true))

// verbActivity maps the verb that starts an operation name (CreateBucket,
// compute.instances.insert, Microsoft.Network/…/write) to an API Activity id.
var verbActivity = map[string]int{
	"create": ocsf.ActivityCreate, "insert": ocsf.ActivityCreate, "run": ocsf.ActivityCreate, "allocate": ocsf.ActivityCreate,
	"register": ocsf.ActivityCreate, "import": ocsf.ActivityCreate, "add": ocsf.ActivityCreate, "copy": ocsf.ActivityCreate,
	"issue": ocsf.ActivityCreate, "request": ocsf.ActivityCreate, "generate": ocsf.ActivityCreate, "upload": ocsf.ActivityCreate,
	"get": ocsf.ActivityRead, "describe": ocsf.ActivityRead, "list": ocsf.ActivityRead, "head": ocsf.ActivityRead,
	"lookup": ocsf.ActivityRead, "search": ocsf.ActivityRead, "scan": ocsf.ActivityRead, "query": ocsf.ActivityRead,
	"read": ocsf.ActivityRead, "select": ocsf.ActivityRead, "batchget": ocsf.ActivityRead, "aggregatedlist": ocsf.ActivityRead,
	"testiampermissions": ocsf.ActivityRead, "download": ocsf.ActivityRead, "view": ocsf.ActivityRead, "retrieve": ocsf.ActivityRead,
	"update": ocsf.ActivityUpdate, "modify": ocsf.ActivityUpdate, "put": ocsf.ActivityUpdate, "set": ocsf.ActivityUpdate,
	"change": ocsf.ActivityUpdate, "enable": ocsf.ActivityUpdate, "disable": ocsf.ActivityUpdate, "attach": ocsf.ActivityUpdate,
	"detach": ocsf.ActivityUpdate, "replace": ocsf.ActivityUpdate, "reset": ocsf.ActivityUpdate, "tag": ocsf.ActivityUpdate,
	"untag": ocsf.ActivityUpdate, "associate": ocsf.ActivityUpdate, "disassociate": ocsf.ActivityUpdate, "authorize": ocsf.ActivityUpdate,
	"revoke": ocsf.ActivityUpdate, "patch": ocsf.ActivityUpdate, "write": ocsf.ActivityUpdate, "start": ocsf.ActivityUpdate,
	"stop": ocsf.ActivityUpdate, "reboot": ocsf.ActivityUpdate, "resize": ocsf.ActivityUpdate, "restore": ocsf.ActivityUpdate,
	"apply": ocsf.ActivityUpdate, "grant": ocsf.ActivityUpdate, "upsert": ocsf.ActivityUpdate, "setiampolicy": ocsf.ActivityUpdate,
	"delete": ocsf.ActivityDelete, "remove": ocsf.ActivityDelete, "terminate": ocsf.ActivityDelete, "deregister": ocsf.ActivityDelete,
	"release": ocsf.ActivityDelete, "purge": ocsf.ActivityDelete, "destroy": ocsf.ActivityDelete, "drop": ocsf.ActivityDelete,
	"deactivate": ocsf.ActivityUpdate, "activate": ocsf.ActivityUpdate,
}

var activityNames = map[int]string{
	ocsf.ActivityUnknown: "Unknown", ocsf.ActivityCreate: "Create", ocsf.ActivityRead: "Read",
	ocsf.ActivityUpdate: "Update", ocsf.ActivityDelete: "Delete", ocsf.ActivityOther: "Other",
}

// activityOf classifies an operation name by its leading verb: the first
// camel-case word of "CreateBucket" or "UpdateFunctionCode20150331v2", the
// whole of a lower-case "insert". It runs on every event, so it lowers
// case into a buffer on the stack instead of allocating.
func activityOf(op string) int {
	var buf [32]byte
	lower := func(s string) []byte {
		n := min(len(s), len(buf))
		for i := range n {
			c := s[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		return buf[:n]
	}
	if len(op) <= len(buf) {
		if id, ok := verbActivity[string(lower(op))]; ok {
			return id
		}
	}
	end := len(op)
	for i := 1; i < len(op); i++ {
		if c := op[i]; 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			end = i
			break
		}
	}
	if end <= len(buf) {
		if id, ok := verbActivity[string(lower(op[:end]))]; ok {
			return id
		}
	}
	return ocsf.ActivityOther
}

// ipOf returns s as an IP address when it is one OCSF accepts; anonymized
// or impossible addresses such as 225.01.00.16 are not.
func ipOf(s string) (string, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return "", false
	}
	return a.String(), true
}

// isHostname reports whether s looks like a DNS name (ecs.amazonaws.com).
func isHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") || !strings.ContainsFunc(s, unicode.IsLetter) {
		return false // 225.01.00.16 is a mangled address, not a name
	}
	for _, r := range s {
		if !(r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// srcEndpoint maps a source address field that may be an IP, a hostname,
// a comma list or a word ("AWS Internal", "private", "gce-internal-ip").
func srcEndpoint(addr string) *ocsf.NetworkEndpoint {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		return nil
	case isHostname(addr):
		if ip, ok := ipOf(addr); ok {
			return &ocsf.NetworkEndpoint{IP: ip}
		}
		return &ocsf.NetworkEndpoint{Domain: addr}
	}
	if ip, ok := ipOf(addr); ok {
		return &ocsf.NetworkEndpoint{IP: ip}
	}
	if first, _, found := strings.Cut(addr, ","); found {
		if ip, ok := ipOf(first); ok {
			return &ocsf.NetworkEndpoint{IP: ip, Name: addr}
		}
	}
	return &ocsf.NetworkEndpoint{Name: addr}
}

// timeLayouts are the timestamp shapes the three clouds write.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999", // Azure without zone: UTC
	"2006-01-02 15:04:05.9999999Z07:00",
	"2006-01-02 15:04:05.9999999",
	"20060102T150405Z",    // CloudTrail creationDate, compact
	"1/2/2006 3:04:05 PM", // Azure portal exports
	"01/02/2006 15:04:05",
	"Jan 2, 2006, 3:04:05 PM", // CloudTrail credentials.expiration
}

// parseTime parses a timestamp in any of timeLayouts, or epoch seconds or
// milliseconds.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	slash, named := strings.IndexByte(s, '/') >= 0, s[0] > '9'
	for _, layout := range timeLayouts {
		// Only the shapes s can have: a failed time.Parse builds an error.
		if strings.IndexByte(layout, '/') >= 0 != slash || layout[0] > '9' != named {
			continue
		}
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		if f > 1e12 {
			return time.UnixMilli(int64(f)), nil
		}
		return time.UnixMilli(int64(f * 1000)), nil
	}
	return time.Time{}, fmt.Errorf("unrecognized time %q", s)
}

// boolOf reads true/false, "true"/"false", "Yes"/"No".
func boolOf(v jsontext.Value) (bool, bool) {
	switch strings.ToLower(strings.Trim(string(v), `" `)) {
	case "true", "yes":
		return true, true
	case "false", "no":
		return false, true
	}
	return false, false
}

// stringOf reads a JSON string, or the text of a number or boolean.
func stringOf(v jsontext.Value) string {
	if len(v) == 0 {
		return ""
	}
	if v[0] == '"' {
		if bytes.IndexByte(v, '\\') < 0 && len(v) >= 2 {
			return string(v[1 : len(v)-1])
		}
		b, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	if v[0] == '{' || v[0] == '[' || string(v) == "null" {
		return ""
	}
	return string(v)
}

// present reports whether a raw value says anything (not absent, null, "",
// {} or []).
func present(v jsontext.Value) bool {
	switch string(v) {
	case "", "null", `""`, "{}", "[]":
		return false
	}
	return true
}

func ptr[T any](v T) *T { return &v }

// shortHash is a stable, compact identifier for bytes that carry no id.
func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// keep adds v to u under key when it says anything.
func keep(u ocsf.Unmapped, key string, v jsontext.Value) {
	if len(v) > 0 {
		u[key] = v
	}
}

// keepAll adds every member of m under prefix.
func keepAll(u ocsf.Unmapped, prefix string, m map[string]jsontext.Value) {
	for k, v := range m {
		u[prefix+k] = v
	}
}

func quote(s string) jsontext.Value { return ocsf.Quote(s) }
