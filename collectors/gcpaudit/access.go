package gcpaudit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/api/impersonate"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// clientOptions turn the access config into client options: ADC or a key
// file, optional impersonation, the quota project, the endpoint.
func clientOptions(ctx context.Context, a *Access, scopes ...string) ([]option.ClientOption, error) {
	var opts []option.ClientOption
	if a.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(a.Endpoint))
	}
	if a.Insecure {
		// Without the transport option the client tries TLS and retries
		// until its deadline (CLOUD-NOTES).
		return append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))), nil
	}
	var base []option.ClientOption
	if a.CredentialsFile != "" {
		base = append(base, option.WithAuthCredentialsFile(option.ServiceAccount, string(a.CredentialsFile)))
	}
	if a.ImpersonateServiceAccount != "" {
		ts, err := impersonate.CredentialsTokenSource(ctx, impersonate.CredentialsConfig{
			TargetPrincipal: a.ImpersonateServiceAccount, Scopes: scopes,
		}, base...)
		if err != nil {
			return nil, fmt.Errorf("impersonate %s: %w", a.ImpersonateServiceAccount, err)
		}
		base = []option.ClientOption{option.WithTokenSource(ts)}
	}
	opts = append(opts, base...)
	if a.QuotaProject != "" {
		opts = append(opts, option.WithQuotaProject(a.QuotaProject))
	}
	return opts, nil
}

// quota paces the read requests charged to one quota project. Cloud
// Logging counts reads per minute per consumer project and answers
// RESOURCE_EXHAUSTED, with no retry hint, beyond it; the generated client
// does not retry that. So requests are spaced evenly under the budget, and
// an exhaustion pauses every stream of the project until the next minute
// starts (plus jitter, so streams do not all retry at the same instant).
type quota struct {
	mu       sync.Mutex
	interval time.Duration // between requests
	next     time.Time     // earliest next request
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
}

func newQuota(perMinute float64) *quota {
	return &quota{interval: time.Duration(float64(time.Minute) / perMinute), now: time.Now, sleep: sleepCtx}
}

// wait blocks until a request may go, and books it.
func (q *quota) wait(ctx context.Context) error {
	q.mu.Lock()
	now := q.now()
	at := q.next
	if at.Before(now) {
		at = now
	}
	q.next = at.Add(q.interval)
	q.mu.Unlock()
	return q.sleep(ctx, at.Sub(now))
}

// exhausted pushes every request of the project past the next minute
// boundary.
func (q *quota) exhausted() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	at := now.Truncate(time.Minute).Add(time.Minute).Add(rand.N(3 * time.Second))
	if at.After(q.next) {
		q.next = at
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// quotas holds one quota per quota project, shared by every source and
// stream of a daemon that uses it.
type quotas struct {
	mu sync.Mutex
	m  map[string]*quota
}

func (qs *quotas) get(project string, perMinute float64) *quota {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.m == nil {
		qs.m = map[string]*quota{}
	}
	q := qs.m[project]
	if q == nil {
		q = newQuota(perMinute)
		qs.m[project] = q
	}
	return q
}
