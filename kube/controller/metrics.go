package controller

import (
	"time"

	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Controller metrics, registered on controller-runtime's registry so the
// manager's /metrics serves them beside its own (workqueue, reconcile
// totals, client latency). They are rolloutmetrics', the same that `sluice
// run` serves; they describe the last persisted status, so they never
// show a decision that was not recorded.
var (
	rolloutMetrics = rolloutmetrics.New()
	// phaseGauge and analysisCounter are read by the tests.
	phaseGauge      = rolloutMetrics.Gauges
	analysisCounter = rolloutMetrics.AnalysisRuns
)

func init() {
	if err := rolloutMetrics.Register(metrics.Registry); err != nil {
		panic(err)
	}
}

// recordStatus updates the gauges from a persisted status and counts the
// runs that completed since the previous one.
func recordStatus(ns, name string, prev, cur *v1alpha1.RolloutStatus) {
	rolloutMetrics.Record(ns, name, prev, cur)
}

// forgetMetrics drops a deleted Rollout's series.
func forgetMetrics(ns, name string) {
	rolloutMetrics.Forget(ns, name)
}

func observeReconcile(result string, d time.Duration) {
	rolloutMetrics.ObserveReconcile(result, d)
}
