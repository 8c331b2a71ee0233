package rolloutmetrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Gauges are sluice_rollout_phase, sluice_rollout_step,
// sluice_rollout_canary_weight and sluice_rollout_stale_nodes. As
// GaugeVecs they were seven children per Rollout (a phase series for each
// of the four phases, and three more), about 3.5 KB per Rollout in
// client_golang, for values that change once per step. Gauges keeps one
// small struct per Rollout instead and makes the series when they are
// scraped, as RunCounter does for the run counters.
type Gauges struct {
	phase, step, weight, stale *prometheus.Desc

	mu     sync.Mutex
	values map[[2]string]*gaugeValues
}

// gaugeValues are one Rollout's gauges; phase indexes phases, -1 for a
// phase outside them (every phase series at 0).
type gaugeValues struct {
	phase               int
	step, weight, stale float64
}

func newGauges() *Gauges {
	rollout := []string{"namespace", "rollout"}
	return &Gauges{
		phase: prometheus.NewDesc("sluice_rollout_phase",
			"1 for the Rollout's current phase (Healthy, Progressing, Paused, Degraded), 0 for the others.",
			[]string{"namespace", "rollout", "phase"}, nil),
		step: prometheus.NewDesc("sluice_rollout_step",
			"Step being executed, counted from 1 as in status.stepDisplay (steps+1 while promoting); 0 when no rollout is in progress.",
			rollout, nil),
		weight: prometheus.NewDesc("sluice_rollout_canary_weight",
			"Percentage of the default route sent to the canary by the current traffic plan.",
			rollout, nil),
		stale: prometheus.NewDesc("sluice_rollout_stale_nodes",
			"Data-plane nodes (xDS proxies, gateways) silent past spec.dataPlane.ackDeadlineSeconds on the plan in force (status.traffic.staleNodes.count).",
			rollout, nil),
		values: map[[2]string]*gaugeValues{},
	}
}

// set records a Rollout's gauges; ns and name are labels already.
func (g *Gauges) set(ns, name string, v gaugeValues) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.values[[2]string{ns, name}]; p != nil {
		*p = v
		return
	}
	g.values[[2]string{ns, name}] = &v
}

func (g *Gauges) forget(ns, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.values, [2]string{ns, name})
}

// get returns a Rollout's gauges (tests); ns and name as given to Record.
func (g *Gauges) get(ns, name string) (gaugeValues, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.values[[2]string{Label(ns), Label(name)}]; p != nil {
		return *p, true
	}
	return gaugeValues{}, false
}

// Phase is the value of sluice_rollout_phase for one phase (tests).
func (g *Gauges) Phase(ns, name string, phase v1alpha1.Phase) float64 {
	v, ok := g.get(ns, name)
	if !ok || v.phase < 0 || phases[v.phase] != phase {
		return 0
	}
	return 1
}

// Step is the value of sluice_rollout_step (tests).
func (g *Gauges) Step(ns, name string) float64 { v, _ := g.get(ns, name); return v.step }

// CanaryWeight is the value of sluice_rollout_canary_weight (tests).
func (g *Gauges) CanaryWeight(ns, name string) float64 { v, _ := g.get(ns, name); return v.weight }

// StaleNodes is the value of sluice_rollout_stale_nodes (tests).
func (g *Gauges) StaleNodes(ns, name string) float64 { v, _ := g.get(ns, name); return v.stale }

// Describe implements prometheus.Collector.
func (g *Gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.phase, g.step, g.weight, g.stale} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it copies the values under the
// lock and makes the series outside it, so a slow scrape never holds up
// Record.
func (g *Gauges) Collect(ch chan<- prometheus.Metric) {
	for _, e := range copyOut(&g.mu, g.values) {
		ns, name := e.key[0], e.key[1]
		for i, p := range phases {
			v := 0.0
			if i == e.v.phase {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(g.phase, prometheus.GaugeValue, v, ns, name, string(p))
		}
		ch <- prometheus.MustNewConstMetric(g.step, prometheus.GaugeValue, e.v.step, ns, name)
		ch <- prometheus.MustNewConstMetric(g.weight, prometheus.GaugeValue, e.v.weight, ns, name)
		ch <- prometheus.MustNewConstMetric(g.stale, prometheus.GaugeValue, e.v.stale, ns, name)
	}
}
