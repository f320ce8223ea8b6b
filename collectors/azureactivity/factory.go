package azureactivity

import (
	"context"
	"fmt"
	"slices"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armsubscriptions"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/pace"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/config"
)

// NewAPIFactory returns the registry entry of the Activity Log poller.
func NewAPIFactory() collectors.Factory {
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewAPIConfig() },
		Create: func(ctx context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*APIConfig)
			opts := arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(cfg.Cloud)}}
			cred, err := credential(&cfg.Access, opts.ClientOptions)
			if err != nil {
				return nil, fmt.Errorf("azure credential: %w", err)
			}
			return apiStreams(ctx, set, cfg, cred, opts)
		},
	}
}

// NewBlobFactory returns the registry entry of the storage-export reader.
func NewBlobFactory() collectors.Factory {
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewBlobConfig() },
		Create: func(_ context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*BlobConfig)
			var client *azblob.Client
			var err error
			if cfg.ConnectionString != "" {
				client, err = azblob.NewClientFromConnectionString(string(cfg.ConnectionString), nil)
			} else {
				copts := policy.ClientOptions{Cloud: cloudConfig(cfg.Cloud)}
				var cred azcore.TokenCredential
				if cred, err = credential(&cfg.Access, copts); err == nil {
					client, err = azblob.NewClient(cfg.AccountURL, cred, &azblob.ClientOptions{ClientOptions: copts})
				}
			}
			if err != nil {
				return nil, fmt.Errorf("blob client: %w", err)
			}
			return []collectors.Stream{{Key: cfg.Name, Collector: newBlobCollector(cfg, client, set)}}, nil
		},
	}
}

// apiStreams makes one stream per subscription, each client with its own
// limiter. opts carry the cloud (and, in tests, the fake's transport).
func apiStreams(ctx context.Context, set collectors.Settings, cfg *APIConfig, cred azcore.TokenCredential, opts arm.ClientOptions) ([]collectors.Stream, error) {
	subs := cfg.Subscriptions
	if len(subs) == 0 {
		var err error
		if subs, err = enabledSubscriptions(ctx, cred, opts); err != nil {
			return nil, err
		}
	}
	throttled := collectors.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailkeeper_azure_throttled_total",
		Help: "Azure Resource Manager answers of 429, per stream (subscription).",
	}, []string{"stream"}))
	now, log := set.Clock(), set.Log()
	var out []collectors.Stream
	for _, sub := range subs {
		key := cfg.Name + "/" + sub
		o := opts
		o.PerRetryPolicies = append(slices.Clone(opts.PerRetryPolicies), pacePolicy{lim: pace.New(cfg.RequestsPerSecond), onThrottle: throttled.WithLabelValues(key).Inc})
		client, err := armmonitor.NewActivityLogsClient(sub, cred, &o)
		if err != nil {
			return nil, fmt.Errorf("activity log client %s: %w", sub, err)
		}
		out = append(out, collectors.Stream{Key: key, Collector: &APICollector{
			client: client, sub: sub,
			scan: cfg.Scan(),
			now:  now, log: log.With("stream", key), seen: scan.NewSeen(),
		}})
	}
	return out, nil
}

// enabledSubscriptions lists the subscriptions the credential can see.
func enabledSubscriptions(ctx context.Context, cred azcore.TokenCredential, opts arm.ClientOptions) ([]string, error) {
	client, err := armsubscriptions.NewClient(cred, &opts)
	if err != nil {
		return nil, err
	}
	var out []string
	for p := client.NewListPager(nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
		for _, s := range page.Value {
			if s.SubscriptionID != nil && (s.State == nil || *s.State == armsubscriptions.SubscriptionStateEnabled) {
				out = append(out, *s.SubscriptionID)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the credential sees no enabled subscription")
	}
	slices.Sort(out)
	return out, nil
}
