package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sums over all label values, for tests.

func (m *Metrics) Published() float64     { return sum(m.published) }
func (m *Metrics) PollErrors() float64    { return sum(m.pollErrors) }
func (m *Metrics) PublishErrors() float64 { return sum(m.pubErrors) }
func (m *Metrics) DeadLetters() float64   { return sum(m.deadletter) }

func sum(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	total := 0.0
	for m := range ch {
		var d dto.Metric
		_ = m.Write(&d)
		total += d.GetCounter().GetValue()
	}
	return total
}
