package azureactivity

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/collectortest"
	azfake "github.com/trailkeeper/trailkeeper/internal/cloudfake/azure"
	"github.com/trailkeeper/trailkeeper/normalize"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	subA = "11111111-1111-1111-1111-111111111111"
	subB = "22222222-2222-2222-2222-222222222222"
)

type clock = collectortest.Clock

func newClock() *clock { return collectortest.NewClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)) }

// fakeARM starts the fake with the subscriptions, and returns the real
// ClientSecretCredential and ARM options that talk to it.
func fakeARM(t testing.TB, clk *clock, subs ...string) (*azfake.Server, azcore.TokenCredential, arm.ClientOptions) {
	srv := azfake.New(clk.Now, subs...)
	t.Cleanup(srv.Close)
	copts := policy.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: srv.URL + "/", Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.core.windows.net/"},
		}},
		Transport: srv.Client(),
		Retry:     policy.RetryOptions{RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond},
	}
	cred, err := azidentity.NewClientSecretCredential("tenant-1", "client-1", "secret", &azidentity.ClientSecretCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return srv, cred, arm.ClientOptions{ClientOptions: copts}
}

func apiTestStreams(t testing.TB, clk *clock, cred azcore.TokenCredential, opts arm.ClientOptions, reg prometheus.Registerer, mod func(*APIConfig)) []collectors.Stream {
	t.Helper()
	cfg := NewAPIConfig()
	cfg.Name = "azure"
	cfg.Subscriptions = []string{subA}
	cfg.RequestsPerSecond = 20
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := apiStreams(context.Background(), collectors.Settings{Now: clk.Now, Registerer: reg}, cfg, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func events(sub string, n int, end time.Time) []azfake.Event {
	out := make([]azfake.Event, n)
	for i := range out {
		out[i] = azfake.MakeEvent(sub, fmt.Sprintf("%s-%04d", sub[:4], i), "Microsoft.Storage/storageAccounts/write", end.Add(-time.Duration(i)*time.Minute))
	}
	return out
}

func eventIDs(t testing.TB, recs []collectors.Record) []string {
	var out []string
	for _, r := range recs {
		var e struct {
			EventDataID string `json:"eventDataId"`
		}
		if err := json.Unmarshal(r.Raw, &e); err != nil || e.EventDataID == "" {
			t.Fatalf("record without eventDataId: %s", r.Raw)
		}
		out = append(out, e.EventDataID)
	}
	return out
}

func wantIDs(evs []azfake.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Raw["eventDataId"].(string))
	}
	return out
}

func TestFilterPagingAndCredential(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, cred, opts := fakeARM(t, clk, subA)
	evs := events(subA, 450, clk.Now().Add(-5*time.Minute))
	srv.Add(evs...)
	st := apiTestStreams(t, clk, cred, opts, nil, func(c *APIConfig) { c.Backfill = 10 * time.Hour; c.Window = 10 * time.Hour })
	d := collectortest.Drain(t, st[0].Collector, nil)
	collectortest.SameIDs(t, eventIDs(t, d.Records), wantIDs(evs))
	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests for 450 events at 200 a page", len(reqs))
	}
	m := regexp.MustCompile(`^eventTimestamp ge '([^']+)' and eventTimestamp le '([^']+)'$`).FindStringSubmatch(reqs[0].Filter)
	if m == nil {
		t.Fatalf("filter on the wire: %q", reqs[0].Filter)
	}
	if from, _ := time.Parse(time.RFC3339Nano, m[1]); !from.Equal(clk.Now().Add(-10 * time.Hour)) {
		t.Errorf("window starts %s", m[1])
	}
	for _, r := range reqs {
		if r.Filter != reqs[0].Filter {
			t.Errorf("window moved mid-scan: %q", r.Filter)
		}
	}
	if srv.TokensIssued() == 0 {
		t.Error("the ClientSecretCredential never asked the token endpoint")
	}
	// The records are the API's JSON, names as {value, localizedValue}.
	if !strings.Contains(string(d.Records[0].Raw), `"localizedValue"`) {
		t.Errorf("record is not the raw REST shape: %s", d.Records[0].Raw)
	}
}

func TestThrottlingHonouredNothingLost(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, cred, opts := fakeARM(t, clk, subA)
	evs := events(subA, 300, clk.Now().Add(-5*time.Minute))
	srv.Add(evs...)
	srv.AddFault(azfake.Fault{Times: 2, Status: 429, RetryAfter: 1})
	reg := prometheus.NewRegistry()
	st := apiTestStreams(t, clk, cred, opts, reg, func(c *APIConfig) { c.Backfill = 10 * time.Hour; c.Window = 10 * time.Hour })
	start := time.Now()
	d := collectortest.Drain(t, st[0].Collector, nil)
	collectortest.SameIDs(t, eventIDs(t, d.Records), wantIDs(evs))
	if time.Since(start) < 2*time.Second {
		t.Errorf("two 429s with Retry-After 1 were waited out in %s", time.Since(start))
	}
	c := collectors.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trailkeeper_azure_throttled_total", Help: "Azure Resource Manager answers of 429, per stream (subscription)."}, []string{"stream"}))
	if got := testutil.ToFloat64(c.WithLabelValues(st[0].Key)); got != 2 {
		t.Errorf("throttled metric %v, want 2", got)
	}
}

func TestLateEventAndSubscriptionsDiscovered(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, cred, opts := fakeARM(t, clk, subB, subA)
	a := events(subA, 20, clk.Now().Add(-5*time.Minute))
	b := events(subB, 30, clk.Now().Add(-6*time.Minute))
	srv.Add(append(a, b...)...)
	st := apiTestStreams(t, clk, cred, opts, nil, func(c *APIConfig) { c.Subscriptions = nil; c.Backfill = 2 * time.Hour })
	if len(st) != 2 || st[0].Key != "azure/"+subA || st[1].Key != "azure/"+subB {
		t.Fatalf("streams: %v", st)
	}
	da := collectortest.Drain(t, st[0].Collector, nil)
	db := collectortest.Drain(t, st[1].Collector, nil)
	collectortest.SameIDs(t, eventIDs(t, da.Records), wantIDs(a))
	collectortest.SameIDs(t, eventIDs(t, db.Records), wantIDs(b))

	// An event 15 minutes old appears now, in subscription A only.
	late := azfake.MakeEvent(subA, "late", "Microsoft.Network/networkSecurityGroups/delete", clk.Now().Add(-15*time.Minute))
	late.Appear = clk.Now().Add(time.Minute)
	srv.Add(late)
	clk.Add(3 * time.Minute)
	da = collectortest.Drain(t, st[0].Collector, da.Cursor)
	if got := eventIDs(t, da.Records); !slices.Equal(got, []string{"evt-late"}) {
		t.Errorf("subscription A read %v, want the late event only", got)
	}
	db = collectortest.Drain(t, st[1].Collector, db.Cursor)
	if len(db.Records) != 0 {
		t.Errorf("subscription B read %d records", len(db.Records))
	}
}

func TestRestartResumesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, cred, opts := fakeARM(t, clk, subA)
	evs := events(subA, 900, clk.Now().Add(-5*time.Minute))
	srv.Add(evs...)
	env := collectortest.NewStreamEnv(t)
	mod := func(c *APIConfig) { c.Backfill = 20 * time.Hour; c.Window = 3 * time.Hour; c.RequestsPerSecond = 5 }
	first := apiTestStreams(t, clk, cred, opts, nil, mod)[0]
	stop := env.Start(t, first, 0, 5*time.Second)
	collectortest.WaitFor(t, "some events", 20*time.Second, func() bool { return env.Msgs(t, "") >= 200 })
	stop()
	if n := env.Msgs(t, ""); n >= uint64(len(evs)) {
		t.Fatalf("first run read everything (%d)", n)
	}
	env.Start(t, apiTestStreams(t, clk, cred, opts, nil, mod)[0], 0, 5*time.Second)
	collectortest.WaitFor(t, "every event", 30*time.Second, func() bool { return env.Msgs(t, "") >= uint64(len(evs)) })
	time.Sleep(200 * time.Millisecond)
	if got := env.Msgs(t, ""); got != uint64(len(evs)) {
		t.Errorf("stream holds %d messages for %d events", got, len(evs))
	}
}

// TestServesRecordsFromFiles: the fake serves REST records from a file,
// and the poller hands them on byte for byte.
func TestServesRecordsFromFiles(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, cred, opts := fakeARM(t, clk)
	var page struct {
		Value []map[string]any `json:"value"`
	}
	for _, e := range events(subA, 3, clk.Now().Add(-10*time.Minute)) {
		page.Value = append(page.Value, e.Raw)
	}
	file := filepath.Join(t.TempDir(), "page.json")
	b, _ := json.Marshal(page)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.LoadFile(file); err != nil || n != 3 {
		t.Fatalf("LoadFile: %d, %v", n, err)
	}
	st := apiTestStreams(t, clk, cred, opts, nil, func(c *APIConfig) { c.Backfill = time.Hour })
	d := collectortest.Drain(t, st[0].Collector, nil)
	if len(d.Records) != 3 {
		t.Fatalf("%d records, the file has 3", len(d.Records))
	}
	for _, r := range d.Records {
		if _, err := normalize.Normalize(r.Raw, r.Format); err != nil {
			t.Errorf("a served record does not map: %v", err)
		}
	}
}
