package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run with -update after checking the change):\n%s", path, firstDiff(want, got))
	}
}

func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return ""
}

// The records that are rightly not events, and why: a golden list, so that
// a record that starts failing (or stops) is seen.
func TestNotEventsGolden(t *testing.T) {
	n := Normalizer{NoProcessedTime: true}
	var lines []string
	for _, r := range corpus(t) {
		if _, err := n.Normalize(r.raw, r.hint); err != nil {
			lines = append(lines, r.origin+": "+err.Error())
		}
	}
	slices.Sort(lines)
	golden(t, "testdata/golden/not-events.txt", []byte(strings.Join(lines, "\n")+"\n"))
}

// Golden output for chosen records of each cloud and for every envelope.
func TestGolden(t *testing.T) {
	n := Normalizer{NoProcessedTime: true}
	cases, err := filepath.Glob("testdata/golden/in/*")
	if err != nil || len(cases) == 0 {
		t.Fatal("no golden inputs", err)
	}
	for _, in := range cases {
		name := filepath.Base(in)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			raws, err := SplitAny(raw)
			if err != nil {
				fmt.Fprintf(&out, "error: %v\n", err) // digests are routed, not mapped
			}
			for _, r := range raws {
				ev, err := n.Normalize(r.Bytes, r.Format)
				if err != nil {
					fmt.Fprintf(&out, "error: %v\n", err)
					continue
				}
				var pretty bytes.Buffer
				json.Indent(&pretty, ev.JSON, "", "  ")
				out.Write(pretty.Bytes())
				out.WriteByte('\n')
				if errs := loadSchema(t).Validate(ev.JSON); len(errs) > 0 {
					t.Errorf("invalid OCSF: %v", errors.Join(errs...))
				}
			}
			golden(t, "testdata/golden/out/"+strings.TrimSuffix(name, filepath.Ext(name))+".golden.json", out.Bytes())
		})
	}
}

// Invariants over every fixture record that maps.
func TestInvariants(t *testing.T) {
	n := Normalizer{NoProcessedTime: true}
	for _, r := range corpus(t) {
		ev, err := n.Normalize(r.raw, r.hint)
		if err != nil {
			continue
		}
		o := ev.OCSF
		rec, f, _, _ := unwrap(r.raw, r.hint)
		var src map[string]any
		if err := json.Unmarshal(rec, &src); err != nil {
			if f == FormatAzureREST || f == FormatAzureExport {
				continue // repaired JSON; covered by its own test
			}
			t.Fatalf("%s: %v", r.origin, err)
		}
		check := func(what string, ok bool, detail ...any) {
			if !ok {
				t.Errorf("%s: %s %v", r.origin, what, detail)
			}
		}
		// raw_data round-trips byte for byte.
		var back struct {
			RawData string `json:"raw_data"`
		}
		json.Unmarshal(ev.JSON, &back)
		check("raw_data", back.RawData == string(rec))
		// time equals the source time to the millisecond.
		srcTime := firstString(src, "eventTime", "eventtime", "timestamp", "receiveTimestamp", "receivetimestamp", "eventTimestamp", "event_timestamp", "time", "Time")
		st, err := parseTime(srcTime)
		check("time", err == nil && st.UnixMilli() == o.Time, srcTime, o.Time)
		switch f {
		case FormatCloudTrail:
			name := firstString(src, "eventName", "eventname")
			if name != "" {
				check("operation", o.API.Operation == name, name)
			}
			if svc := firstString(src, "eventSource", "eventsource"); svc != "" {
				check("service", o.API.Service != nil && o.API.Service.Name == svc, svc)
			}
			code := firstString(src, "errorCode", "errorcode")
			failed := code != "" && code != "200"
			if resp, ok := src["responseElements"].(map[string]any); ok && resp["ConsoleLogin"] == "Failure" {
				failed = true
			}
			check("failure iff the source says so", (o.StatusID == 2) == failed, code)
			if ip, err := netip.ParseAddr(firstString(src, "sourceIPAddress", "sourceipaddress")); err == nil {
				check("source ip", o.SrcEndpoint.IP == ip.String(), ip)
			}
			if acct := firstString(src, "recipientAccountId", "recipientaccountid"); acct != "" {
				check("account", o.Cloud.Account != nil && o.Cloud.Account.UID == acct, acct)
			}
		case FormatGCPAudit:
			pp, _ := src["protoPayload"].(map[string]any)
			if pp == nil {
				pp, _ = src["protopayload"].(map[string]any)
			}
			check("operation", o.API.Operation == pp["methodName"], pp["methodName"])
			st, _ := pp["status"].(map[string]any)
			code, _ := st["code"].(float64)
			denied := false
			if az, ok := pp["authorizationInfo"].([]any); ok {
				for _, a := range az {
					if m, ok := a.(map[string]any); ok && m["granted"] == false {
						denied = true
					}
				}
			}
			check("failure iff the source says so", (o.StatusID == 2) == (code != 0 || denied), code, denied)
			if rm, ok := pp["requestMetadata"].(map[string]any); ok {
				if ip, err := netip.ParseAddr(fmt.Sprint(rm["callerIp"])); err == nil {
					check("source ip", o.SrcEndpoint.IP == ip.String(), ip)
				}
			}
			if ln := firstString(src, "logName"); strings.HasPrefix(ln, "projects/") {
				p := strings.Split(ln, "/")[1]
				check("project", o.Cloud.Account != nil && o.Cloud.Account.UID == p, p)
			}
		case FormatAzureREST, FormatAzureExport:
			op := firstString(src, "operationName", "operation_name", "OperationName")
			check("operation", o.API.Operation == op, op)
			st := strings.ToLower(firstString(src, "status", "resultType"))
			check("failure iff the source says so", (o.StatusID == 2) == (st == "failed" || st == "failure"), st)
			if sub := firstString(src, "subscriptionId", "subscription_id"); sub != "" {
				check("subscription", o.Cloud.Account != nil && o.Cloud.Account.UID == sub, sub)
			}
			if ip, err := netip.ParseAddr(firstString(src, "callerIpAddress")); err == nil {
				check("source ip", o.SrcEndpoint.IP == ip.String(), ip)
			}
		}
	}
}

// firstString reads the first of keys that is a string, or the value of a
// REST {value, localizedValue} name.
func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			return v
		case map[string]any:
			if s, ok := v["value"].(string); ok {
				return s
			}
		}
	}
	return ""
}
