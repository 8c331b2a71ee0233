package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Controller metrics, registered on controller-runtime's registry so the
// manager's /metrics serves them beside its own (workqueue, reconcile
// totals, client latency). The rollout gauges describe the last persisted
// status, so they never show a decision that was not recorded.
var (
	phaseGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_rollout_phase",
		Help: "1 for the Rollout's current phase (Healthy, Progressing, Paused, Degraded), 0 for the others.",
	}, []string{"namespace", "rollout", "phase"})
	stepGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_rollout_step",
		Help: "Step being executed, counted from 1 as in status.stepDisplay (steps+1 while promoting); 0 when no rollout is in progress.",
	}, []string{"namespace", "rollout"})
	weightGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_rollout_canary_weight",
		Help: "Percentage of the default route sent to the canary by the current traffic plan.",
	}, []string{"namespace", "rollout"})
	staleGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_rollout_stale_nodes",
		Help: "xDS nodes silent past spec.dataPlane.ackDeadlineSeconds on the plan in force (status.traffic.staleNodes.count).",
	}, []string{"namespace", "rollout"})
	analysisCounter = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_rollout_analysis_runs_total",
		Help: "Analysis runs that completed, by kind and outcome (Successful, Failed, Inconclusive, Error).",
	}, []string{"namespace", "rollout", "kind", "phase"})
	reconcileHistogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_rollout_reconcile_duration_seconds",
		Help:    "Time of one Rollout reconcile, by result (success, conflict, error).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"result"})
)

var phases = []v1alpha1.Phase{v1alpha1.PhaseHealthy, v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhaseDegraded}

func init() {
	metrics.Registry.MustRegister(phaseGauge, stepGauge, weightGauge, staleGauge, analysisCounter, reconcileHistogram)
}

// recordStatus updates the gauges from a persisted status and counts the
// runs that completed since the previous one.
func recordStatus(ns, name string, prev, cur *v1alpha1.RolloutStatus) {
	for _, p := range phases {
		v := 0.0
		if cur.Phase == p {
			v = 1
		}
		phaseGauge.WithLabelValues(ns, name, string(p)).Set(v)
	}
	step := 0.0
	if cur.CanaryRevision != "" && cur.CurrentStepIndex != nil {
		step = float64(*cur.CurrentStepIndex + 1)
	}
	stepGauge.WithLabelValues(ns, name).Set(step)
	weightGauge.WithLabelValues(ns, name).Set(float64(cur.Traffic.CanaryWeight))
	stale := 0.0
	if sn := cur.Traffic.StaleNodes; sn != nil {
		stale = float64(sn.Count)
	}
	staleGauge.WithLabelValues(ns, name).Set(stale)
	was := map[string]bool{}
	for _, r := range prev.Analysis {
		was[r.Name] = r.Phase.Completed()
	}
	for _, r := range cur.Analysis {
		if r.Phase.Completed() && !was[r.Name] {
			analysisCounter.WithLabelValues(ns, name, string(r.Kind), string(r.Phase)).Inc()
		}
	}
}

// forgetMetrics drops a deleted Rollout's series, so they neither linger
// nor grow without bound as Rollouts come and go.
func forgetMetrics(ns, name string) {
	l := prometheus.Labels{"namespace": ns, "rollout": name}
	phaseGauge.DeletePartialMatch(l)
	stepGauge.DeletePartialMatch(l)
	weightGauge.DeletePartialMatch(l)
	staleGauge.DeletePartialMatch(l)
	analysisCounter.DeletePartialMatch(l)
}

func observeReconcile(result string, d time.Duration) {
	reconcileHistogram.WithLabelValues(result).Observe(d.Seconds())
}
