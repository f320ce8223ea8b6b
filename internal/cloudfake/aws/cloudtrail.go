package aws

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Event is one CloudTrail event as LookupEvents serves it.
type Event struct {
	Account, Region string
	ID              string
	Name, Source    string
	Time            time.Time
	// Appear is when the event becomes visible (zero: at Time). An event
	// that appears long after its Time is what an overlap exists for.
	Appear time.Time
	// Raw is the CloudTrailEvent string; MakeEvent fills it.
	Raw string
}

// MakeEvent returns an event with a realistic CloudTrail record.
func MakeEvent(account, region, id, name string, t time.Time) Event {
	rec := map[string]any{
		"eventVersion": "1.11",
		"userIdentity": map[string]any{
			"type": "AssumedRole", "principalId": "AROAEXAMPLE:ci", "accountId": account,
			"arn": "arn:aws:sts::" + account + ":assumed-role/deployer/ci",
		},
		"eventTime":          t.UTC().Format(time.RFC3339),
		"eventSource":        "ec2.amazonaws.com",
		"eventName":          name,
		"awsRegion":          region,
		"sourceIPAddress":    "203.0.113.7",
		"userAgent":          "aws-cli/2.15.0",
		"requestParameters":  map[string]any{"instanceId": "i-0123456789abcdef0"},
		"responseElements":   nil,
		"requestID":          "req-" + id,
		"eventID":            id,
		"readOnly":           false,
		"eventType":          "AwsApiCall",
		"managementEvent":    true,
		"recipientAccountId": account,
		"eventCategory":      "Management",
	}
	raw, _ := json.Marshal(rec)
	return Event{Account: account, Region: region, ID: id, Name: name, Source: "ec2.amazonaws.com", Time: t, Raw: string(raw)}
}

// PublicKey is a CloudTrail digest signing key.
type PublicKey struct {
	DER        []byte // PKCS#1 or PKIX
	Start, End time.Time
}

type trailState struct {
	events []Event
	keys   []PublicKey
	// limit is LookupEvents' rate per account and region; limiters holds
	// one bucket per account|region.
	limit    rate.Limit
	burst    int
	limiters map[string]*rate.Limiter
}

func (t *trailState) init() {
	t.limit, t.burst = 2, 2
	t.limiters = map[string]*rate.Limiter{}
}

// AddEvents makes events available to LookupEvents.
func (s *Server) AddEvents(evs ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trail.events = append(s.trail.events, evs...)
}

// AddPublicKey makes a digest key available to ListPublicKeys.
func (s *Server) AddPublicKey(k PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trail.keys = append(s.trail.keys, k)
}

// SetLookupLimit changes the LookupEvents rate per account and region
// (AWS: 2 per second). Requests over it get a ThrottlingException.
func (s *Server) SetLookupLimit(perSecond float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trail.limit, s.trail.burst = rate.Limit(perSecond), burst
	clear(s.trail.limiters)
}

// epoch is how the JSON protocols write timestamps.
type epoch float64

func (e epoch) time() time.Time {
	sec, frac := math.Modf(float64(e))
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

func toEpoch(t time.Time) epoch { return epoch(float64(t.UnixNano()) / 1e9) }

type lookupToken struct {
	Params   string    `json:"p"`
	Offset   int       `json:"o"`
	Snapshot time.Time `json:"s"`
}

func (s *Server) cloudtrail(c *call, body []byte) {
	switch c.op {
	case "CloudTrail.LookupEvents":
		s.lookupEvents(c, body)
	case "CloudTrail.ListPublicKeys":
		s.listPublicKeys(c, body)
	default:
		c.fail(http.StatusBadRequest, "UnknownOperationException", c.op)
	}
}

func (s *Server) lookupEvents(c *call, body []byte) {
	var in struct {
		StartTime, EndTime *epoch
		MaxResults         int
		NextToken          string
		LookupAttributes   []struct{ AttributeKey, AttributeValue string }
	}
	if err := json.Unmarshal(body, &in); err != nil {
		c.fail(http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	s.mu.Lock()
	key := c.account + "|" + c.region
	lim := s.trail.limiters[key]
	if lim == nil {
		lim = rate.NewLimiter(s.trail.limit, s.trail.burst)
		s.trail.limiters[key] = lim
	}
	allowed := lim.Allow()
	now := s.now()
	s.mu.Unlock()
	if !allowed {
		c.fail(http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	}
	if in.MaxResults <= 0 || in.MaxResults > 50 {
		in.MaxResults = 50
	}
	start, end := time.Time{}, now
	if in.StartTime != nil {
		start = in.StartTime.time()
	}
	if in.EndTime != nil {
		end = in.EndTime.time()
	}
	if start.After(end) {
		c.fail(http.StatusBadRequest, "InvalidTimeRangeException", "start after end")
		return
	}
	// A NextToken is valid only with the parameters it came from, as in
	// AWS: a client that moves its window mid-scan gets an error.
	params := fmt.Sprint(start.UnixNano(), end.UnixNano(), in.LookupAttributes, c.account, c.region)
	tok := lookupToken{Params: params, Snapshot: now}
	if in.NextToken != "" {
		b, err := base64.StdEncoding.DecodeString(in.NextToken)
		if err != nil || json.Unmarshal(b, &tok) != nil || tok.Params != params {
			c.fail(http.StatusBadRequest, "InvalidNextTokenException", "invalid NextToken")
			return
		}
	}
	s.mu.Lock()
	var match []Event
	for _, e := range s.trail.events {
		appear := e.Appear
		if appear.IsZero() {
			appear = e.Time
		}
		if e.Account != c.account || e.Region != c.region || appear.After(tok.Snapshot) || e.Time.Before(start) || e.Time.After(end) {
			continue
		}
		match = append(match, e)
	}
	s.mu.Unlock()
	// Newest first, as CloudTrail returns them.
	slices.SortStableFunc(match, func(a, b Event) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	type outEvent struct {
		EventId, EventName, EventSource, CloudTrailEvent, ReadOnly, Username string
		EventTime                                                            epoch
	}
	out := struct {
		Events    []outEvent
		NextToken string `json:",omitempty"`
	}{Events: []outEvent{}}
	from := min(tok.Offset, len(match))
	to := min(from+in.MaxResults, len(match))
	for _, e := range match[from:to] {
		out.Events = append(out.Events, outEvent{EventId: e.ID, EventName: e.Name, EventSource: e.Source, CloudTrailEvent: e.Raw, ReadOnly: "false", Username: "ci", EventTime: toEpoch(e.Time)})
	}
	if to < len(match) {
		tok.Offset = to
		b, _ := json.Marshal(tok)
		out.NextToken = base64.StdEncoding.EncodeToString(b)
	}
	c.json("application/x-amz-json-1.1", out)
}

func (s *Server) listPublicKeys(c *call, body []byte) {
	var in struct{ StartTime, EndTime *epoch }
	_ = json.Unmarshal(body, &in)
	type outKey struct {
		Value                              []byte
		ValidityStartTime, ValidityEndTime epoch
		Fingerprint                        string
	}
	out := struct{ PublicKeyList []outKey }{PublicKeyList: []outKey{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.trail.keys {
		if in.StartTime != nil && k.End.Before(in.StartTime.time()) || in.EndTime != nil && k.Start.After(in.EndTime.time()) {
			continue
		}
		sum := md5.Sum(k.DER)
		out.PublicKeyList = append(out.PublicKeyList, outKey{Value: k.DER, ValidityStartTime: toEpoch(k.Start), ValidityEndTime: toEpoch(k.End), Fingerprint: hex.EncodeToString(sum[:])})
	}
	c.json("application/x-amz-json-1.1", out)
}
