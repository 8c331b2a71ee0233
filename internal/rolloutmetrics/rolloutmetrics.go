// Package rolloutmetrics defines the per-Rollout metrics that both modes
// serve — the controller on controller-runtime's registry, `sluice run`
// on its /metrics listener — so that a dashboard or alert written for one
// mode works unchanged on the other: same names, same labels, same
// meaning. The values come from a persisted status only, so they never
// show a decision that was not recorded.
package rolloutmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Metrics are the series of every Rollout, labelled namespace and rollout.
// The vectors are exported to be read (tests); write them through Record
// and Forget only.
type Metrics struct {
	// Phase is 1 for the Rollout's current phase, 0 for the others.
	Phase *prometheus.GaugeVec
	// Step is the step being executed, from 1; 0 when idle.
	Step *prometheus.GaugeVec
	// CanaryWeight is the canary's share of the default route.
	CanaryWeight *prometheus.GaugeVec
	// StaleNodes counts the xDS nodes silent past the ack deadline.
	StaleNodes *prometheus.GaugeVec
	// AnalysisRuns counts completed analysis runs by kind and outcome.
	AnalysisRuns *prometheus.CounterVec
}

var phases = []v1alpha1.Phase{v1alpha1.PhaseHealthy, v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhaseDegraded}

// New builds the metrics, registered nowhere yet (Register).
func New() *Metrics {
	return &Metrics{
		Phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_phase",
			Help: "1 for the Rollout's current phase (Healthy, Progressing, Paused, Degraded), 0 for the others.",
		}, []string{"namespace", "rollout", "phase"}),
		Step: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_step",
			Help: "Step being executed, counted from 1 as in status.stepDisplay (steps+1 while promoting); 0 when no rollout is in progress.",
		}, []string{"namespace", "rollout"}),
		CanaryWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_canary_weight",
			Help: "Percentage of the default route sent to the canary by the current traffic plan.",
		}, []string{"namespace", "rollout"}),
		StaleNodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_stale_nodes",
			Help: "xDS nodes silent past spec.dataPlane.ackDeadlineSeconds on the plan in force (status.traffic.staleNodes.count).",
		}, []string{"namespace", "rollout"}),
		AnalysisRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rollout_analysis_runs_total",
			Help: "Analysis runs that completed, by kind and outcome (Successful, Failed, Inconclusive, Error).",
		}, []string{"namespace", "rollout", "kind", "phase"}),
	}
}

// Register adds every series to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Phase, m.Step, m.CanaryWeight, m.StaleNodes, m.AnalysisRuns} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Record sets the gauges from a persisted status and counts the analysis
// runs that completed since prev (nil: none had).
func (m *Metrics) Record(ns, name string, prev, cur *v1alpha1.RolloutStatus) {
	for _, p := range phases {
		v := 0.0
		if cur.Phase == p {
			v = 1
		}
		m.Phase.WithLabelValues(ns, name, string(p)).Set(v)
	}
	step := 0.0
	if cur.CanaryRevision != "" && cur.CurrentStepIndex != nil {
		step = float64(*cur.CurrentStepIndex + 1)
	}
	m.Step.WithLabelValues(ns, name).Set(step)
	m.CanaryWeight.WithLabelValues(ns, name).Set(float64(cur.Traffic.CanaryWeight))
	stale := 0.0
	if sn := cur.Traffic.StaleNodes; sn != nil {
		stale = float64(sn.Count)
	}
	m.StaleNodes.WithLabelValues(ns, name).Set(stale)
	was := map[string]bool{}
	if prev != nil {
		for _, r := range prev.Analysis {
			was[r.Name] = r.Phase.Completed()
		}
	}
	for _, r := range cur.Analysis {
		if r.Phase.Completed() && !was[r.Name] {
			m.AnalysisRuns.WithLabelValues(ns, name, string(r.Kind), string(r.Phase)).Inc()
		}
	}
}

// Forget drops a deleted Rollout's series, so they neither linger nor
// grow without bound as Rollouts come and go.
func (m *Metrics) Forget(ns, name string) {
	l := prometheus.Labels{"namespace": ns, "rollout": name}
	m.Phase.DeletePartialMatch(l)
	m.Step.DeletePartialMatch(l)
	m.CanaryWeight.DeletePartialMatch(l)
	m.StaleNodes.DeletePartialMatch(l)
	m.AnalysisRuns.DeletePartialMatch(l)
}
