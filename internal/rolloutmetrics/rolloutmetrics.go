// Package rolloutmetrics defines the per-Rollout metrics that both modes
// serve — the controller on controller-runtime's registry, `sluice run`
// on its /metrics listener — so that a dashboard or alert written for one
// mode works unchanged on the other: same names, same labels, same
// meaning. The values come from a persisted status only, so they never
// show a decision that was not recorded. docs/metrics.md lists every
// series with its type, unit and labels.
//
// Label values that come from outside (Rollout and metric names from Git)
// are bounded (Label), so that a hostile or careless manifest cannot make
// a series of any size; the series of a Rollout go when it does (Forget).
package rolloutmetrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// MaxLabel bounds a label value taken from outside, in bytes. Kubernetes
// names fit (a namespace 63, a metric name 63); a longer name from Git is
// cut, with an ellipsis, and escaped like any outside text.
const MaxLabel = 128

// Label makes an outside name a label value: at most MaxLabel bytes,
// valid UTF-8, control characters escaped.
func Label(s string) string { return untrusted.Text(s, MaxLabel) }

// Metrics are the series of every Rollout, labelled namespace and rollout.
// The collectors are exported to be read (tests); write them through
// Record and Forget only.
type Metrics struct {
	// Gauges are each Rollout's phase (1 for the current one, 0 for the
	// others), step being executed (from 1; 0 when idle), canary weight
	// and count of data-plane nodes silent past the ack deadline.
	Gauges *Gauges
	// AnalysisRuns counts completed analysis runs by kind and outcome.
	AnalysisRuns *RunCounter
	// ReconcileDuration is the time of one Rollout's reconcile (controller)
	// or step (sluice run), by result.
	ReconcileDuration *prometheus.HistogramVec
}

var (
	phases = []v1alpha1.Phase{v1alpha1.PhaseHealthy, v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhaseDegraded}
	kinds  = []v1alpha1.AnalysisKind{v1alpha1.AnalysisStepKind, v1alpha1.AnalysisBackgroundKind,
		v1alpha1.AnalysisPrePromotion, v1alpha1.AnalysisPostPromotion, v1alpha1.AnalysisDark}
	outcomes = []v1alpha1.AnalysisPhase{v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisFailed,
		v1alpha1.AnalysisInconclusive, v1alpha1.AnalysisError}
)

// Results of a reconcile, the result label of
// sluice_rollout_reconcile_duration_seconds.
const (
	ResultSuccess = "success"
	// ResultConflict: another writer changed the Rollout meanwhile; the
	// reconcile is retried (controller mode only: `sluice run` is the only
	// writer of its state).
	ResultConflict = "conflict"
	ResultError    = "error"
)

// New builds the metrics, registered nowhere yet (Register).
func New() *Metrics {
	return &Metrics{
		Gauges:       newGauges(),
		AnalysisRuns: newRunCounter(),
		ReconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_rollout_reconcile_duration_seconds",
			Help:    "Time of one Rollout reconcile (sluice run: one Rollout's step, with the write of its pass), by result (success, conflict, error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
	}
}

// Register adds every series to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	// Every result exists from the start, at 0, so that a rate() sees the
	// first one too.
	for _, r := range []string{ResultSuccess, ResultConflict, ResultError} {
		m.ReconcileDuration.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.Gauges, m.AnalysisRuns, m.ReconcileDuration} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register rollout metrics: %w", err)
		}
	}
	return nil
}

// ObserveReconcile records the time of one reconcile; result is one of
// ResultSuccess, ResultConflict and ResultError.
func (m *Metrics) ObserveReconcile(result string, d time.Duration) {
	m.ReconcileDuration.WithLabelValues(result).Observe(d.Seconds())
}

// Record sets the gauges from a persisted status and counts the analysis
// runs that completed since prev (nil: none had).
//
// The counter of analysis runs has every kind and outcome of the Rollout
// from its first status on, at 0: a series that appears with its first
// count hides that count from rate() and increase(), and an alert on
// Failed runs written before the first failure would see no series at
// all. That is 20 series per Rollout, a fixed number, kept small
// (RunCounter).
func (m *Metrics) Record(ns, name string, prev, cur *v1alpha1.RolloutStatus) {
	ns, name = Label(ns), Label(name)
	m.AnalysisRuns.ensure(ns, name)
	v := gaugeValues{phase: index(phases, cur.Phase), weight: float64(cur.Traffic.CanaryWeight)}
	if cur.CanaryRevision != "" && cur.CurrentStepIndex != nil {
		v.step = float64(*cur.CurrentStepIndex + 1)
	}
	if sn := cur.Traffic.StaleNodes; sn != nil {
		v.stale = float64(sn.Count)
	}
	m.Gauges.set(ns, name, v)
	was := map[string]bool{}
	if prev != nil {
		for _, r := range prev.Analysis {
			was[r.Name] = r.Phase.Completed()
		}
	}
	for _, r := range cur.Analysis {
		if r.Phase.Completed() && !was[r.Name] {
			m.AnalysisRuns.inc(ns, name, r.Kind, r.Phase)
		}
	}
}

// Forget drops a deleted Rollout's series, so they neither linger nor
// grow without bound as Rollouts come and go.
func (m *Metrics) Forget(ns, name string) {
	ns, name = Label(ns), Label(name)
	m.AnalysisRuns.forget(ns, name)
	m.Gauges.forget(ns, name)
}
