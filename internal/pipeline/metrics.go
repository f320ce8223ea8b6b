package pipeline

import "github.com/prometheus/client_golang/prometheus"

// Metrics are shared by every pipeline of a daemon.
type Metrics struct {
	polled      *prometheus.CounterVec
	published   *prometheus.CounterVec
	deadletter  *prometheus.CounterVec
	pollErrors  *prometheus.CounterVec
	pubErrors   *prometheus.CounterVec
	saveErrors  *prometheus.CounterVec
	saves       *prometheus.CounterVec
	lag         *prometheus.GaugeVec
	pollSeconds *prometheus.HistogramVec
	pubSeconds  *prometheus.HistogramVec
}

// NewMetrics registers the pipeline metrics on reg (a private registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		polled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_records_polled_total", Help: "Raw records returned by collectors.",
		}, []string{"source"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_events_published_total", Help: "Normalized events acknowledged by the stream (duplicates included).",
		}, []string{"source", "cloud"}),
		deadletter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_deadletter_total", Help: "Records published to the dead-letter subject because they could not be normalized.",
		}, []string{"source", "cloud"}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_poll_errors_total", Help: "Failed polls (each is retried on the same cursor).",
		}, []string{"source"}),
		pubErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_publish_errors_total", Help: "Failed page publishes (each is retried).",
		}, []string{"source"}),
		saveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_checkpoint_errors_total", Help: "Failed cursor saves (each is retried).",
		}, []string{"source"}),
		saves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailkeeper_checkpoint_saves_total", Help: "Cursors saved.",
		}, []string{"source"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailkeeper_source_lag_seconds", Help: "Now minus the time of the newest event published by the stream.",
		}, []string{"source", "stream"}),
		pollSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trailkeeper_poll_duration_seconds", Help: "Duration of successful polls.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}, []string{"source"}),
		pubSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trailkeeper_publish_duration_seconds", Help: "Duration of successful page publishes, until the last ack.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"source"}),
	}
	reg.MustRegister(m.polled, m.published, m.deadletter, m.pollErrors, m.pubErrors, m.saveErrors, m.saves, m.lag, m.pollSeconds, m.pubSeconds)
	return m
}
