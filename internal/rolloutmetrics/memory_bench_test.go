package rolloutmetrics

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// BenchmarkSeriesPerRollout measures the live heap the per-Rollout series
// hold, per Rollout, at 1,000 Rollouts:
//
//	go test -run '^$' -bench SeriesPerRollout ./internal/rolloutmetrics/
func BenchmarkSeriesPerRollout(b *testing.B) {
	const n = 1000
	st := &v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseHealthy}
	var perRollout float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := New()
		for i := range n {
			m.Record("ns", fmt.Sprintf("rollout-%04d", i), nil, st)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perRollout = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perRollout, "heap-B/rollout")
}
