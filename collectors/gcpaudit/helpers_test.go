package gcpaudit

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/cloud/audit"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	gcpfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/gcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock = collectortest.Clock

func newClock() *clock {
	return collectortest.NewClock(time.Date(2026, 11, 23, 12, 0, 30, 0, time.UTC))
}

func fakeLogging(t testing.TB, clk *clock) *gcpfake.Server {
	srv, err := gcpfake.New(clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// entry is an Admin Activity audit entry of project at ts.
func entry(project, id string, ts time.Time) gcpfake.Entry {
	payload, _ := anypb.New(&audit.AuditLog{
		ServiceName: "compute.googleapis.com", MethodName: "v1.compute.instances.insert",
		ResourceName:       "projects/" + project + "/zones/europe-west1-b/instances/vm-" + id,
		AuthenticationInfo: &audit.AuthenticationInfo{PrincipalEmail: "ci@" + project + ".iam.gserviceaccount.com"},
	})
	return gcpfake.Entry{LogEntry: &loggingpb.LogEntry{
		LogName:          "projects/" + project + "/logs/cloudaudit.googleapis.com%2Factivity",
		InsertId:         id,
		Timestamp:        timestamppb.New(ts),
		ReceiveTimestamp: timestamppb.New(ts.Add(time.Second)),
		Payload:          &loggingpb.LogEntry_ProtoPayload{ProtoPayload: payload},
	}}
}

// entries are n entries of project, one a minute back from end.
func entries(project string, n int, end time.Time) []gcpfake.Entry {
	out := make([]gcpfake.Entry, n)
	for i := range out {
		out[i] = entry(project, fmt.Sprintf("%s-%04d", project, i), end.Add(-time.Duration(i)*time.Minute))
	}
	return out
}

// nonAudit is an application log entry (jsonPayload) in an audit log name,
// as a misconfigured sink can mix in.
func nonAudit(project, id string, ts time.Time) gcpfake.Entry {
	p, _ := structpb.NewStruct(map[string]any{"message": "hello"})
	return gcpfake.Entry{LogEntry: &loggingpb.LogEntry{
		LogName: "projects/" + project + "/logs/cloudaudit.googleapis.com%2Factivity", InsertId: id,
		Timestamp: timestamppb.New(ts), Payload: &loggingpb.LogEntry_JsonPayload{JsonPayload: p},
	}}
}

// noWait is a quota whose waits are recorded, not slept.
type noWait struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (n *noWait) quotas(perMinute float64, now func() time.Time) *quotas {
	q := newQuota(perMinute)
	q.now = now
	q.sleep = func(ctx context.Context, d time.Duration) error {
		n.mu.Lock()
		n.sleeps = append(n.sleeps, d)
		n.mu.Unlock()
		return ctx.Err()
	}
	return &quotas{m: map[string]*quota{"": q}}
}

// apiTestStreams builds the streams of the default config changed by mod,
// against srv, with waits recorded in nw.
func apiTestStreams(t testing.TB, srv *gcpfake.Server, clk *clock, nw *noWait, mod func(*APIConfig)) []collectors.Stream {
	t.Helper()
	cfg := NewAPIConfig()
	cfg.Name = "gcp"
	cfg.ResourceNames = []string{"projects/alpha-project"}
	cfg.Endpoint, cfg.Insecure = srv.Addr, true
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts, err := clientOptions(context.Background(), &cfg.Access)
	if err != nil {
		t.Fatal(err)
	}
	st, err := apiStreams(context.Background(), collectors.Settings{Now: clk.Now}, cfg, nw.quotas(cfg.RequestsPerMinute, clk.Now), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st[0].Collector.(*APICollector).Close() })
	return st
}

func insertID(t testing.TB, raw []byte) string {
	t.Helper()
	var e struct{ InsertID string }
	if err := json.Unmarshal(raw, &e); err != nil || e.InsertID == "" {
		t.Fatalf("record without insertId: %s", raw)
	}
	return e.InsertID
}

func ids(t testing.TB, recs []collectors.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, insertID(t, r.Raw))
	}
	return out
}

func assertIDs(t *testing.T, got []string, want []gcpfake.Entry) {
	t.Helper()
	var w []string
	for _, e := range want {
		w = append(w, e.InsertId)
	}
	collectortest.SameIDs(t, got, w)
}
