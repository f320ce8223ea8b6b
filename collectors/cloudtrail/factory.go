package cloudtrail

import (
	"context"
	"crypto/rsa"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	ct "github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailkeeper/trailkeeper/collectors"
	"github.com/trailkeeper/trailkeeper/collectors/internal/pace"
	"github.com/trailkeeper/trailkeeper/collectors/internal/scan"
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

// NewS3Factory returns the registry entry of the trail bucket reader.
func NewS3Factory() collectors.Factory {
	return collectors.Factory{
		NewConfig: func() config.SourceConfig { return NewS3Config() },
		Create: func(ctx context.Context, set collectors.Settings, sc config.SourceConfig) ([]collectors.Stream, error) {
			cfg := sc.(*S3Config)
			base, err := loadBase(ctx, &cfg.Access)
			if err != nil {
				return nil, err
			}
			return S3Streams(ctx, set, cfg, base)
		},
	}
}

// S3Streams expands cfg: in list mode one stream per account × region, in
// sqs mode one stream for the queue. base is the SDK config before the
// bucket role, if any, is assumed.
func S3Streams(ctx context.Context, set collectors.Settings, cfg *S3Config, base aws.Config) ([]collectors.Stream, error) {
	now, log := set.Clock(), set.Log()
	acfg := base.Copy()
	if cfg.RoleARN != "" {
		accts, err := accountConfigs(ctx, base, &cfg.Access)
		if err != nil {
			return nil, err
		}
		acfg = accts[accountOf(cfg.RoleARN)]
	}
	pathStyle := acfg.BaseEndpoint != nil // local servers and fakes
	s3c := s3.NewFromConfig(acfg, func(o *s3.Options) {
		o.UsePathStyle = pathStyle
		o.DisableLogOutputChecksumValidationSkipped = true // trail files have none; the digests are the check
	})
	m := newMetrics(set.Registerer)
	files := &trailFiles{bucket: newBucket(s3c, cfg.Bucket), metrics: m, health: set.Health, logger: log}
	if cfg.VerifyDigests {
		var mu sync.Mutex
		byRegion := map[string]*verifier{}
		files.verifier = func(region string) *verifier {
			mu.Lock()
			defer mu.Unlock()
			if v := byRegion[region]; v != nil {
				return v
			}
			rc := acfg.Copy()
			rc.Region = region
			v := &verifier{keys: ct.NewFromConfig(rc), bucket: files.bucket, now: now, pubs: map[string]*rsa.PublicKey{}}
			byRegion[region] = v
			return v
		}
	}
	if cfg.Mode == ModeSQS {
		return []collectors.Stream{{Key: cfg.Name, Collector: newSQSCollector(cfg, sqs.NewFromConfig(acfg), files, now, log.With("stream", cfg.Name))}}, nil
	}
	regions := cfg.Regions
	if len(regions) == 1 && regions[0] == AllEnabled {
		var err error
		if regions, err = enabledRegions(ctx, acfg); err != nil {
			return nil, err
		}
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	prefix += "AWSLogs/"
	if cfg.OrgID != "" {
		prefix += cfg.OrgID + "/"
	}
	var out []collectors.Stream
	for _, acct := range cfg.Accounts {
		for _, r := range regions {
			key := cfg.Name + "/" + acct + "/" + r
			out = append(out, collectors.Stream{Key: key, Collector: &S3Collector{
				files: files, bucket: cfg.Bucket, prefix: prefix, account: acct, region: r,
				lookback: cfg.Lookback, backfill: cfg.Backfill, pageSize: cfg.PageSize,
				now: now, log: log.With("stream", key),
			}})
		}
	}
	return out, nil
}

// metrics are the collectors' own; one set per process, labeled by stream.
type metrics struct {
	throttled *prometheus.CounterVec
	rate      *prometheus.GaugeVec
	digests   *prometheus.CounterVec
	poison    prometheus.Counter
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
		digests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_cloudtrail_digests_total",
			Help: "CloudTrail digest files checked, by result (valid, invalid: a broken signature, chain or log file hash).",
		}, []string{"result"}),
		poison: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailkeeper_sqs_poison_messages_total",
			Help: "SQS messages that were not bucket notifications; their bodies went to the dead-letter subject.",
		}),
	}
	m.throttled = collectors.Register(reg, m.throttled)
	m.rate = collectors.Register(reg, m.rate)
	m.digests = collectors.Register(reg, m.digests)
	m.poison = collectors.Register(reg, m.poison)
	return m
}

// APIStreams expands cfg into one LookupEvents stream per account × region,
// starting from base (the SDK config before AssumeRole).
func APIStreams(ctx context.Context, set collectors.Settings, cfg *APIConfig, base aws.Config) ([]collectors.Stream, error) {
	tgts, err := targets(ctx, base, &cfg.Access)
	if err != nil {
		return nil, err
	}
	now, log := set.Clock(), set.Log()
	m := newMetrics(set.Registerer)
	var out []collectors.Stream
	for _, t := range tgts {
		key := cfg.Name + "/" + t.Account + "/" + t.Region
		lim := pace.New(cfg.RequestsPerSecond)
		throttled := m.throttled.WithLabelValues(key)
		rateGauge := m.rate.WithLabelValues(key)
		rateGauge.Set(lim.Rate())
		client := ct.NewFromConfig(t.cfg, func(o *ct.Options) {
			o.APIOptions = append(o.APIOptions, awsMiddleware(lim, func() {
				throttled.Inc()
				rateGauge.Set(lim.Rate())
			}))
		})
		out = append(out, collectors.Stream{Key: key, Collector: &APICollector{
			client: client, account: t.Account, region: t.Region,
			scan: cfg.Scan(),
			now:  now, log: log.With("stream", key), seen: scan.NewSeen(),
		}})
	}
	return out, nil
}
