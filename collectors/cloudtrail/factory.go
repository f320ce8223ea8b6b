package cloudtrail

import (
	"context"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ct "github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/config"
)

// NewAPIFactory returns the registry entry of the LookupEvents poller.
func NewAPIFactory() collectors.Factory {
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewAPIConfig() },
		Create: func(ctx context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*APIConfig)
			base, err := loadBase(ctx, &cfg.Access)
			if err != nil {
				return nil, err
			}
			return APIStreams(ctx, set, cfg, base)
		},
	}
}

// metrics are the collectors' own; one set per process, labeled by stream.
type metrics struct {
	throttled *prometheus.CounterVec
	rate      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_aws_throttled_total",
			Help: "AWS requests answered with a throttling error, per stream (account/region).",
		}, []string{"stream"}),
		rate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailkeeper_aws_request_rate",
			Help: "Requests per second the adaptive limiter currently allows, per stream.",
		}, []string{"stream"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.throttled, m.rate} {
			if err := reg.Register(c); err != nil {
				if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
					switch c {
					case m.throttled:
						m.throttled = are.ExistingCollector.(*prometheus.CounterVec)
					case m.rate:
						m.rate = are.ExistingCollector.(*prometheus.GaugeVec)
					}
				}
			}
		}
	}
	return m
}

// APIStreams expands cfg into one LookupEvents stream per account × region,
// starting from base (the SDK config before AssumeRole).
func APIStreams(ctx context.Context, set collectors.Settings, cfg *APIConfig, base aws.Config) ([]collectors.Stream, error) {
	tgts, err := targets(ctx, base, &cfg.Access)
	if err != nil {
		return nil, err
	}
	now := set.Now
	if now == nil {
		now = time.Now
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(set.Registerer)
	var out []collectors.Stream
	for _, t := range tgts {
		key := cfg.Name + "/" + t.Account + "/" + t.Region
		lim := newLimiter(cfg.RequestsPerSecond)
		throttled := m.throttled.WithLabelValues(key)
		rateGauge := m.rate.WithLabelValues(key)
		rateGauge.Set(lim.rate())
		client := ct.NewFromConfig(t.cfg, func(o *ct.Options) {
			o.APIOptions = append(o.APIOptions, lim.middleware(func() {
				throttled.Inc()
				rateGauge.Set(lim.rate())
			}))
		})
		out = append(out, collectors.Stream{Key: key, Collector: &APICollector{
			client: client, account: t.Account, region: t.Region,
			lag: cfg.Lag, overlap: cfg.Overlap, backfill: cfg.Backfill, window: cfg.Window,
			now: now, log: log.With("stream", key),
			seen: map[string]time.Time{}, pending: map[string][]seenEvent{},
		}})
	}
	return out, nil
}
