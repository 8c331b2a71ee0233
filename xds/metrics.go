package xds

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. Label values are looked up
// once here, because the ACK path runs for every node on every push.
type metrics struct {
	connected *prometheus.GaugeVec
	pushes    *prometheus.CounterVec
	ackDelay  *prometheus.HistogramVec
	nacks     *prometheus.CounterVec
	publishes *prometheus.CounterVec
	refused   *prometheus.CounterVec

	connectedBy map[Group]prometheus.Gauge
	pushesBy    map[Group]*[numKinds]prometheus.Counter
	ackDelayBy  map[Group]*[numKinds]prometheus.Observer
	nacksBy     map[Group]*[numKinds]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "connected_nodes",
			Help: "xDS streams with an identified node, by client group.",
		}, []string{"group"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "pushes_total",
			Help: "Discovery responses sent, by client group and resource type.",
		}, []string{"group", "type"}),
		ackDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "push_ack_seconds",
			Help:    "Time from sending a discovery response to its ACK, by client group and resource type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"group", "type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "nacks_total",
			Help: "Discovery responses rejected by a node, by client group and resource type.",
		}, []string{"group", "type"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "publishes_total",
			Help: "Plan publications by result: pushed, unchanged, staged (no stream open: checked and kept, published when a node identifies), or error (previous snapshot kept).",
		}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "xds", Name: "refused_streams_total",
			Help: "Streams refused when they open or first name their node: no_credentials, no_identity (a client certificate without a SPIFFE ID), token_rejected, not_workload, authenticator_unavailable, node_id_mismatch.",
		}, []string{"reason"}),
		connectedBy: map[Group]prometheus.Gauge{},
		pushesBy:    map[Group]*[numKinds]prometheus.Counter{},
		ackDelayBy:  map[Group]*[numKinds]prometheus.Observer{},
		nacksBy:     map[Group]*[numKinds]prometheus.Counter{},
	}
	for _, g := range groups {
		m.connectedBy[g] = m.connected.WithLabelValues(string(g))
		p, a, n := &[numKinds]prometheus.Counter{}, &[numKinds]prometheus.Observer{}, &[numKinds]prometheus.Counter{}
		for k := range numKinds {
			p[k] = m.pushes.WithLabelValues(string(g), kindName[k])
			a[k] = m.ackDelay.WithLabelValues(string(g), kindName[k])
			n[k] = m.nacks.WithLabelValues(string(g), kindName[k])
		}
		m.pushesBy[g], m.ackDelayBy[g], m.nacksBy[g] = p, a, n
	}
	for _, r := range []string{"pushed", "unchanged", "staged", "error"} {
		m.publishes.WithLabelValues(r)
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.connected, m.pushes, m.ackDelay, m.nacks, m.publishes, m.refused} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register xds metrics: %w", err)
	}
	return m, nil
}
