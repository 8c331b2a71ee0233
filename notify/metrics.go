package notify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	sent, failed, dropped, retries *prometheus.CounterVec
	queued                         *prometheus.GaugeVec
	requests, latency              *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "notify", Name: name, Help: help,
		}, []string{"target"})
	}
	m := &metrics{
		sent:    counter("sent_total", "Notifications delivered."),
		failed:  counter("failed_total", "Notifications given up on: attempts exhausted, a permanent error, or cut short by shutdown."),
		dropped: counter("dropped_total", "Notifications dropped unsent: the queue was full (the oldest goes) or the notifier was closing."),
		retries: counter("retries_total", "Delivery attempts repeated after a failure."),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "notify", Name: "queue_length", Help: "Notifications waiting per target.",
		}, []string{"target"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "notify", Name: "request_duration_seconds",
			Help:    "Duration of one delivery attempt (HTTP request), successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8), // 5ms .. 82s
		}, []string{"target"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "notify", Name: "delivery_latency_seconds",
			Help:    "Time from Notify to successful delivery, queueing and retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10), // 5ms .. 22m
		}, []string{"target"}),
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.sent, m.failed, m.dropped, m.retries, m.queued, m.requests, m.latency} {
		if err := reg.Register(c); err != nil {
			// All or nothing, so a caller can fix the registry and retry.
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("register notification metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// init creates a target's series at zero, so dashboards and alerts see
// them before the first notification.
func (m *metrics) init(target string) {
	for _, c := range []*prometheus.CounterVec{m.sent, m.failed, m.dropped, m.retries} {
		c.WithLabelValues(target)
	}
	m.queued.WithLabelValues(target)
}
