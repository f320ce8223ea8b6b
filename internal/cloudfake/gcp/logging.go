// Package gcp is a local Cloud Logging server: the LoggingServiceV2 gRPC
// service that the real Go client (cloud.google.com/go/logging/apiv2)
// talks to. It honours what shapes a collector: filters on logName and
// timestamp, timestamp order, page size and page tokens bound to their
// request. It can inject RESOURCE_EXHAUSTED (the read quota) and
// UNAVAILABLE, delay pages, and hold entries back so that they appear late
// with an old timestamp.
package gcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	loggingpb "cloud.google.com/go/logging/apiv2/loggingpb"
	_ "google.golang.org/genproto/googleapis/cloud/audit" // AuditLog payloads in Any
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Entry is one log entry the server holds.
type Entry struct {
	*loggingpb.LogEntry
	// Appear is when the entry becomes visible (zero: at its timestamp).
	Appear time.Time
}

// Fault makes ListLogEntries fail or stall; Times is how many more
// requests it applies to (negative: forever).
type Fault struct {
	Times int
	Code  codes.Code // codes.OK with Delay: only slow
	Delay time.Duration
}

// Request is one ListLogEntries the server answered.
type Request struct {
	Time          time.Time // the server's clock
	Wall          time.Time
	ResourceNames []string
	Filter        string
	PageSize      int32
	Code          codes.Code
}

// Server is the fake. Create it with New; Close stops it.
type Server struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	// Addr is the host:port to dial.
	Addr string

	grpc *grpc.Server
	mu   sync.Mutex
	now  func() time.Time
	ents []Entry
	flt  []*Fault
	reqs []Request
}

// New starts a server on a free local port; now is its clock (nil: real).
func New(now func() time.Time) (*Server, error) {
	if now == nil {
		now = time.Now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), grpc: grpc.NewServer(), now: now}
	loggingpb.RegisterLoggingServiceV2Server(s.grpc, s)
	go func() { _ = s.grpc.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.grpc.Stop() }

// Add makes entries available.
func (s *Server) Add(es ...Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ents = append(s.ents, es...)
}

// AddJSON adds LogEntries written as Cloud Logging exports them (JSON).
func (s *Server) AddJSON(entries ...[]byte) error {
	for _, b := range entries {
		var e loggingpb.LogEntry
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &e); err != nil {
			return fmt.Errorf("log entry: %w", err)
		}
		s.Add(Entry{LogEntry: &e})
	}
	return nil
}

// AddFault installs f.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flt = append(s.flt, &f)
}

// Requests returns the requests answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

type pageToken struct {
	Params   string    `json:"p"`
	Offset   int       `json:"o"`
	Snapshot time.Time `json:"s"`
}

var (
	logNameRE = regexp.MustCompile(`logName\s*=\s*"([^"]+)"`)
	tsRE      = regexp.MustCompile(`timestamp\s*(>=|<=|>|<)\s*"([^"]+)"`)
)

// ListLogEntries implements LoggingServiceV2Server.
func (s *Server) ListLogEntries(ctx context.Context, req *loggingpb.ListLogEntriesRequest) (*loggingpb.ListLogEntriesResponse, error) {
	s.mu.Lock()
	now := s.now()
	var f *Fault
	for _, x := range s.flt {
		if x.Times != 0 {
			if x.Times > 0 {
				x.Times--
			}
			f = x
			break
		}
	}
	rec := Request{Time: now, Wall: time.Now(), ResourceNames: req.ResourceNames, Filter: req.Filter, PageSize: req.PageSize}
	s.mu.Unlock()
	if f != nil && f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp, code, err := s.list(req, now, f)
	rec.Code = code
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()
	return resp, err
}

func (s *Server) list(req *loggingpb.ListLogEntriesRequest, now time.Time, f *Fault) (*loggingpb.ListLogEntriesResponse, codes.Code, error) {
	if f != nil && f.Code != codes.OK {
		return nil, f.Code, status.Error(f.Code, "injected fault")
	}
	if len(req.ResourceNames) == 0 {
		return nil, codes.InvalidArgument, status.Error(codes.InvalidArgument, "resource_names is required")
	}
	logs := map[string]bool{}
	for _, m := range logNameRE.FindAllStringSubmatch(req.Filter, -1) {
		logs[m[1]] = true
	}
	type bound struct {
		op string
		t  time.Time
	}
	var bounds []bound
	for _, m := range tsRE.FindAllStringSubmatch(req.Filter, -1) {
		t, err := time.Parse(time.RFC3339Nano, m[2])
		if err != nil {
			return nil, codes.InvalidArgument, status.Errorf(codes.InvalidArgument, "bad timestamp %q", m[2])
		}
		bounds = append(bounds, bound{m[1], t})
	}
	size := int(req.PageSize)
	if size <= 0 || size > 1000 {
		size = 1000
	}
	params := fmt.Sprint(req.ResourceNames, req.Filter, req.OrderBy)
	tok := pageToken{Params: params, Snapshot: now}
	if req.PageToken != "" {
		b, err := base64.StdEncoding.DecodeString(req.PageToken)
		if err != nil || json.Unmarshal(b, &tok) != nil || tok.Params != params {
			return nil, codes.InvalidArgument, status.Error(codes.InvalidArgument, "page token does not match the request")
		}
	}
	s.mu.Lock()
	var match []*loggingpb.LogEntry
	for _, e := range s.ents {
		appear := e.Appear
		ts := e.GetTimestamp().AsTime()
		if appear.IsZero() {
			appear = ts
		}
		if appear.After(tok.Snapshot) || !inResources(e.LogName, req.ResourceNames) || (len(logs) > 0 && !logs[e.LogName]) {
			continue
		}
		ok := true
		for _, b := range bounds {
			switch b.op {
			case ">=":
				ok = ok && !ts.Before(b.t)
			case ">":
				ok = ok && ts.After(b.t)
			case "<=":
				ok = ok && !ts.After(b.t)
			case "<":
				ok = ok && ts.Before(b.t)
			}
		}
		if ok {
			match = append(match, e.LogEntry)
		}
	}
	s.mu.Unlock()
	desc := strings.Contains(req.OrderBy, "desc")
	slices.SortStableFunc(match, func(a, b *loggingpb.LogEntry) int {
		c := a.GetTimestamp().AsTime().Compare(b.GetTimestamp().AsTime())
		if desc {
			c = -c
		}
		if c == 0 {
			c = strings.Compare(a.InsertId, b.InsertId)
		}
		return c
	})
	from := min(tok.Offset, len(match))
	to := min(from+size, len(match))
	resp := &loggingpb.ListLogEntriesResponse{Entries: match[from:to]}
	if to < len(match) {
		tok.Offset = to
		b, _ := json.Marshal(tok)
		resp.NextPageToken = base64.StdEncoding.EncodeToString(b)
	}
	return resp, codes.OK, nil
}

// inResources reports whether a log belongs to one of the resources
// ("projects/p/logs/…" belongs to "projects/p").
func inResources(logName string, resources []string) bool {
	for _, r := range resources {
		if strings.HasPrefix(logName, r+"/logs/") {
			return true
		}
	}
	return false
}
