// Package aws is a local server that speaks the wire protocols of the AWS
// services trailkeeper calls: CloudTrail (JSON 1.1: LookupEvents,
// ListPublicKeys), STS (query: AssumeRole), EC2 (query: DescribeRegions), S3
// (REST: ListObjectsV2, GetObject) and SQS (JSON 1.0: ReceiveMessage,
// DeleteMessage, ChangeMessageVisibility). Tests and the demo point the
// real SDK clients at it with BaseEndpoint, so what is tested is what runs
// against AWS: request signing, serialization, pagination, error codes and
// the SDK's own retries.
//
// The server keeps the real limits where they shape the client (LookupEvents
// at 2 requests per second per account and region, 50 events per page, a
// NextToken bound to its request) and has switches for what goes wrong in
// production: throttling, 5xx, slow responses, events that appear late with
// an old timestamp, and truncated bodies.
package aws

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultAccount is the account of credentials that did not come from
// AssumeRole.
const DefaultAccount = "000000000000"

// Server is the fake. Create it with New; it is safe for concurrent use.
type Server struct {
	srv *httptest.Server
	ln  net.Listener
	// URL is the BaseEndpoint for every client.
	URL string

	mu       sync.Mutex
	now      func() time.Time
	faults   []*Fault
	requests []Request
	creds    map[string]assumedCreds // access key id → the role session it is
	assumed  []AssumeRoleCall

	trail trailState
	s3    map[string]map[string]*Object // bucket → key → object
	sqs   map[string]*queue             // queue name → queue
	// Regions are the enabled regions DescribeRegions reports.
	regions []string
}

// Request is one request the server answered, for tests that check how a
// client paced itself.
type Request struct {
	Time    time.Time // on the server's clock
	Wall    time.Time // real time, for pacing checks
	Op      string    // e.g. "CloudTrail.LookupEvents", "S3.GetObject"
	Account string
	Region  string
	Status  int
	// Session is the role session name of credentials from AssumeRole
	// ("" for others): which daemon of a fleet called.
	Session string
	Start   time.Time // real time the request arrived; Wall is when it was answered
}

type assumedCreds struct{ account, session string }

// Fault makes requests fail. Match selects them; Times is how many more it
// fails (0: no more; negative: forever).
type Fault struct {
	Op      string // operation, as in Request.Op; "" for any
	Account string // "" for any
	Times   int
	// Status and Code are the error to return (a 5xx, or 400 with
	// ThrottlingException and the like). Status 0 with Delay set only
	// delays the request.
	Status int
	Code   string
	Delay  time.Duration
	// Truncate cuts an S3 object body after this many bytes while the
	// Content-Length still announces the whole.
	Truncate int
	// RetryAfter is sent as a Retry-After header (seconds) with the error.
	RetryAfter int
}

// Option configures New.
type Option func(*Server)

// WithClock sets the server's clock, for windows and late events.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithRegions sets the enabled regions.
func WithRegions(r ...string) Option { return func(s *Server) { s.regions = r } }

// WithListener serves on ln instead of a free local port (the demo's
// fixed address).
func WithListener(ln net.Listener) Option { return func(s *Server) { s.ln = ln } }

// New starts a server; Close stops it.
func New(opts ...Option) *Server {
	s := &Server{
		now:     time.Now,
		creds:   map[string]assumedCreds{},
		s3:      map[string]map[string]*Object{},
		sqs:     map[string]*queue{},
		regions: []string{"us-east-1", "eu-west-1"},
	}
	s.trail.init()
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if s.ln != nil {
		s.srv.Listener.Close()
		s.srv.Listener = s.ln
	}
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Now is the server's clock.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// AddFault installs f; faults are tried in the order added.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Requests returns the requests answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// scopeRE reads the signing scope of a SigV4 Authorization header.
var scopeRE = regexp.MustCompile(`Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request`)

// call is one request being served.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	op      string
	account string
	region  string
	session string
	start   time.Time
	status  int
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, account: DefaultAccount, start: time.Now()}
	if m := scopeRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		c.region = m[2]
		s.mu.Lock()
		if a, ok := s.creds[m[1]]; ok {
			c.account, c.session = a.account, a.session
		}
		s.mu.Unlock()
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	var handle func(*call, []byte)
	switch {
	case strings.HasPrefix(target, "CloudTrail_20131101."):
		c.op = "CloudTrail." + strings.TrimPrefix(target, "CloudTrail_20131101.")
		handle = s.cloudtrail
	case strings.HasPrefix(target, "AmazonSQS."):
		c.op = "SQS." + strings.TrimPrefix(target, "AmazonSQS.")
		handle = s.sqsCall
	case r.Method == http.MethodPost && r.URL.Path == "/" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		handle = s.query
		c.op = "Query." + formValue(body, "Action")
	default:
		c.op = "S3." + s3Op(r)
		handle = s.s3Call
	}
	if f := s.fault(c); f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.Status != 0 {
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", fmt.Sprint(f.RetryAfter))
			}
			c.fail(f.Status, f.Code, "injected fault")
			s.log(c)
			return
		}
		if f.Truncate > 0 {
			c.r = r.WithContext(withTruncate(r.Context(), f.Truncate))
		}
	}
	handle(c, body)
	s.log(c)
}

// fault returns the first fault matching c, and uses it up.
func (s *Server) fault(c *call) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Times == 0 || (f.Op != "" && f.Op != c.op) || (f.Account != "" && f.Account != c.account) {
			continue
		}
		if f.Times > 0 {
			f.Times--
		}
		return f
	}
	return nil
}

func (s *Server) log(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := c.status
	if st == 0 {
		st = http.StatusOK
	}
	s.requests = append(s.requests, Request{Time: s.now(), Wall: time.Now(), Op: c.op, Account: c.account, Region: c.region, Status: st, Session: c.session, Start: c.start})
}

// json writes v as an AWS JSON protocol response.
func (c *call) json(ct string, v any) {
	c.w.Header().Set("Content-Type", ct)
	_ = json.NewEncoder(c.w).Encode(v)
}

// fail writes an error the way the service's protocol does.
func (c *call) fail(status int, code, msg string) {
	c.status = status
	if code == "" {
		code = "InternalFailure"
		if status == http.StatusServiceUnavailable {
			code = "ServiceUnavailable"
		}
	}
	switch {
	case strings.HasPrefix(c.op, "CloudTrail."), strings.HasPrefix(c.op, "SQS."):
		c.w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		c.w.Header().Set("X-Amzn-ErrorType", code)
		c.w.WriteHeader(status)
		_ = json.NewEncoder(c.w).Encode(map[string]string{"__type": code, "message": msg})
	case strings.HasPrefix(c.op, "S3."):
		c.w.Header().Set("Content-Type", "application/xml")
		c.w.WriteHeader(status)
		fmt.Fprintf(c.w, "<Error><Code>%s</Code><Message>%s</Message><RequestId>fake</RequestId></Error>", code, xmlEscape(msg))
	default:
		c.w.Header().Set("Content-Type", "text/xml")
		c.w.WriteHeader(status)
		fmt.Fprintf(c.w, "<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>", code, xmlEscape(msg))
	}
}
