package xdsplane

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/engine"
)

// What answered a plan version, the via label of sluice_xds_plan_answers_total.
const (
	// viaLocal: xDS clients, all of them connected to this replica.
	viaLocal = "local"
	// viaReplicas: xDS clients, some of them connected to other replicas
	// and seen through their reports.
	viaReplicas = "replicas"
	// viaFallback: no xDS client anywhere, or Istio refused the plan: the
	// Fallback's answer (the VirtualService write).
	viaFallback = "fallback"
	// viaWithoutClients: no xDS client anywhere, AckWithoutClients.
	viaWithoutClients = "without_clients"
)

// Metrics are the Plane's and the reports' Prometheus metrics.
type Metrics struct {
	answers     *prometheus.CounterVec
	writes      *prometheus.CounterVec
	reportBytes prometheus.Gauge
}

// NewMetrics makes the metrics and registers them on reg (nil: nowhere).
// One set serves a Plane and its reports; two Planes in one process (tests)
// need a registry each.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := unregisteredMetrics()
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.answers, m.writes, m.reportBytes} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register xDS plane metrics: %w", err)
	}
	return m, nil
}

func unregisteredMetrics() *Metrics {
	m := &Metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "plan_answers_total",
			Help: "Plan versions the leader saw answered, once per Rollout and version, by answer (Acknowledged, Rejected) and by what answered: " +
				"local (xDS clients of this replica), replicas (xDS clients reported by other replicas too), fallback (the VirtualService write), " +
				"without_clients (ackWithoutClients).",
		}, []string{"state", "via"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "report_writes_total",
			Help: "Writes of this replica's xDS report ConfigMap, by result (ok, error).",
		}, []string{"result"}),
		reportBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "report_bytes",
			Help: "Size of the last xDS report this replica wrote; a ConfigMap holds at most 1 MiB.",
		}),
	}
	for _, r := range []string{"ok", "error"} {
		m.writes.WithLabelValues(r)
	}
	// Every series exists from the start, at 0: a rate() over a counter that
	// appears with its first answer misses that answer, and a dashboard or
	// alert written before the first rollout would see no series at all.
	for _, state := range []engine.AckState{engine.AckAcknowledged, engine.AckRejected} {
		for _, via := range []string{viaLocal, viaReplicas, viaFallback, viaWithoutClients} {
			m.answers.WithLabelValues(string(state), via)
		}
	}
	return m
}

// answered counts a plan version's first answer.
func (m *Metrics) answered(state engine.AckState, via string) {
	m.answers.WithLabelValues(string(state), via).Inc()
}
