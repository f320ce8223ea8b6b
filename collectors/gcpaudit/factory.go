package gcpaudit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	logging "cloud.google.com/go/logging/apiv2"
	pubsub "cloud.google.com/go/pubsub/v2/apiv1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/option"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
	"github.com/trailkeeper/trailkeeper/config"
)

const readScope = "https://www.googleapis.com/auth/logging.read"

// NewAPIFactory returns the registry entry of the entries.list poller. Its
// sources share one quota budget per quota project.
func NewAPIFactory() collectors.Factory {
	qs := &quotas{}
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewAPIConfig() },
		Create: func(ctx context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*APIConfig)
			opts, err := clientOptions(ctx, &cfg.Access, readScope)
			if err != nil {
				return nil, err
			}
			return apiStreams(ctx, set, cfg, qs, opts...)
		},
	}
}

// NewPubSubFactory returns the registry entry of the log-sink subscriber.
func NewPubSubFactory() collectors.Factory {
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewPubSubConfig() },
		Create: func(ctx context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*PubSubConfig)
			opts, err := clientOptions(ctx, &cfg.Access, "https://www.googleapis.com/auth/pubsub")
			if err != nil {
				return nil, err
			}
			return pubSubStreams(ctx, set, cfg, opts...)
		},
	}
}

func apiStreams(ctx context.Context, set collectors.Settings, cfg *APIConfig, qs *quotas, opts ...option.ClientOption) ([]collectors.Stream, error) {
	client, err := logging.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("logging client: %w", err)
	}
	closeOnce := sync.OnceValue(client.Close)
	now, log := set.Clock(), set.Log()
	exhausted := collectors.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailkeeper_gcp_quota_exhausted_total",
		Help: "entries.list answers of RESOURCE_EXHAUSTED, per quota project; each pauses its streams to the next minute.",
	}, []string{"quota_project"}))
	qp := cfg.QuotaProject
	q := qs.get(qp, cfg.RequestsPerMinute)
	var out []collectors.Stream
	for batch := range slices.Chunk(cfg.ResourceNames, cfg.BatchSize) {
		var logNames []string
		for _, r := range batch {
			for _, l := range cfg.Logs {
				logNames = append(logNames, r+"/logs/"+auditLogs[l])
			}
		}
		key := cfg.Name + "/" + strings.Join(batch, ",")
		out = append(out, collectors.Stream{Key: key, Collector: &APICollector{
			list: apiLister{client}, resources: batch, logNames: logNames, extra: cfg.Filter,
			pageSize: int32(cfg.PageSize), quota: q, exhausted: exhausted.WithLabelValues(qp),
			scan: cfg.Scan(),
			now:  now, log: log.With("stream", key), seen: scan.NewSeen(), closeClient: closeOnce,
		}})
	}
	return out, nil
}

func pubSubStreams(ctx context.Context, set collectors.Settings, cfg *PubSubConfig, opts ...option.ClientOption) ([]collectors.Stream, error) {
	client, err := pubsub.NewSubscriptionAdminClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	log := set.Log()
	return []collectors.Stream{{Key: cfg.Name, Collector: newPubSubCollector(cfg, client, client.Close, log.With("stream", cfg.Name))}}, nil
}
