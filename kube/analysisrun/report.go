package analysisrun

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Metrics, registered on controller-runtime's registry so the manager's
// /metrics serves them beside its own. Labels stay bounded: run names are
// generated per rollout and per step, so they are left out; metric names
// come from templates and are cut to rolloutmetrics.MaxLabel.
var (
	// analysisSeries are the analysis metrics' values and thresholds,
	// rolloutmetrics' like `sluice run`'s, set from each run's persisted
	// status.
	analysisSeries = rolloutmetrics.NewAnalysis()

	measurementsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_analysis_measurements_total",
		Help: "Measurements recorded in AnalysisRun status, by namespace, metric (the template's metric name) and outcome (Successful, Failed, Inconclusive, Error).",
	}, []string{"namespace", "metric", "outcome"})
	measurementSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_analysis_measurement_duration_seconds",
		Help:    "Time of one measurement (all its queries), by result (ok: an answer, error: the measurement could not be taken).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"result"})
)

func init() {
	for _, r := range []string{"ok", "error"} {
		measurementSeconds.WithLabelValues(r)
	}
	metrics.Registry.MustRegister(measurementsTotal, measurementSeconds)
	if err := analysisSeries.Register(metrics.Registry); err != nil {
		panic(err)
	}
}

// rolloutOf names the Rollout that owns run: the series of a run carry
// its Rollout's name, and a run without one (made by hand) has none.
func rolloutOf(run *v1alpha1.AnalysisRun) (string, bool) {
	ref := metav1.GetControllerOf(run)
	if ref == nil || ref.Kind != workload.RolloutKind.Kind || ref.APIVersion != workload.RolloutKind.GroupVersion().String() {
		return "", false
	}
	return ref.Name, true
}

// showValues sets the analysis series from a run's persisted status and
// remembers its Rollout, for dropRun.
func (r *Reconciler) showValues(run *v1alpha1.AnalysisRun) {
	ro, ok := rolloutOf(run)
	if !ok {
		return
	}
	r.mu.Lock()
	if r.rollouts == nil {
		r.rollouts = map[types.NamespacedName]string{}
	}
	r.rollouts[client.ObjectKeyFromObject(run)] = ro
	r.mu.Unlock()
	analysisSeries.Observe(run.Namespace, ro, run)
}

// dropValues removes the series that show a measurement of a run that is
// gone (deleted, or being deleted).
func (r *Reconciler) dropValues(key types.NamespacedName) {
	r.mu.Lock()
	ro, ok := r.rollouts[key]
	delete(r.rollouts, key)
	r.mu.Unlock()
	if ok {
		analysisSeries.Drop(key.Namespace, ro, key.Name)
	}
}

func observeMeasurement(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	measurementSeconds.WithLabelValues(result).Observe(d.Seconds())
}

// report emits the Events and counts the measurements of one persisted
// status write, prev being the status it replaced.
func (r *Reconciler) report(ctx context.Context, prev *v1alpha1.AnalysisRunState, run *v1alpha1.AnalysisRun) {
	countMeasurements(run.Namespace, prev, &run.Status)
	r.showValues(run)
	for _, e := range completions(prev, &run.Status) {
		r.Recorder.Eventf(run, nil, e.typ, e.reason, e.action, "%s", e.note)
	}
	logCompleted(ctx, prev, run)
}

// countMeasurements adds the measurements recorded since prev. The
// counters in status count every measurement (the list keeps only the last
// few), so their differences are exact however many were taken at once.
func countMeasurements(ns string, prev, cur *v1alpha1.AnalysisRunState) {
	before := map[string]*v1alpha1.MetricResult{}
	for i := range prev.Metrics {
		before[prev.Metrics[i].Name] = &prev.Metrics[i]
	}
	for _, m := range cur.Metrics {
		var old v1alpha1.MetricResult
		if b := before[m.Name]; b != nil {
			old = *b
		}
		for _, c := range []struct {
			outcome  v1alpha1.AnalysisPhase
			now, was int32
		}{
			{v1alpha1.AnalysisSuccessful, m.Successful, old.Successful},
			{v1alpha1.AnalysisFailed, m.Failed, old.Failed},
			{v1alpha1.AnalysisInconclusive, m.Inconclusive, old.Inconclusive},
			{v1alpha1.AnalysisError, m.Error, old.Error},
		} {
			if d := c.now - c.was; d > 0 {
				measurementsTotal.WithLabelValues(rolloutmetrics.Label(ns), rolloutmetrics.Label(m.Name), string(c.outcome)).Add(float64(d))
			}
		}
	}
}

// event is one Kubernetes Event about a run.
type event struct {
	typ, reason, action, note string
}

// Event reasons: Metric<phase> when a metric completes, Run<phase> when
// the run does. Nothing else is announced: a run of many measurements
// makes at most one Event per metric and one for itself.
const (
	actionMeasure  = "Measure"
	actionComplete = "Complete"
)

// completions lists an Event for each metric and for the run that
// completed between prev and cur: Normal when Successful, Warning
// otherwise (Inconclusive waits for a person, Failed and Error abort the
// rollout).
func completions(prev, cur *v1alpha1.AnalysisRunState) []event {
	done := map[string]bool{}
	for _, m := range prev.Metrics {
		done[m.Name] = m.Phase.Completed()
	}
	var out []event
	for _, m := range cur.Metrics {
		if !m.Phase.Completed() || done[m.Name] {
			continue
		}
		n := m.Successful + m.Failed + m.Inconclusive + m.Error
		note := fmt.Sprintf("metric %s %s after %d measurements", m.Name, m.Phase, n)
		if m.Message != "" {
			note += ": " + m.Message
		}
		out = append(out, event{eventType(m.Phase), "Metric" + string(m.Phase), actionMeasure, truncate(note)})
	}
	if cur.Phase.Completed() && !prev.Phase.Completed() {
		note := "analysis run " + string(cur.Phase)
		if cur.Message != "" {
			note += ": " + cur.Message
		}
		out = append(out, event{eventType(cur.Phase), "Run" + string(cur.Phase), actionComplete, truncate(note)})
	}
	return out
}

func eventType(p v1alpha1.AnalysisPhase) string {
	if p == v1alpha1.AnalysisSuccessful {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

// maxNote is the API server's limit on an events.k8s.io/v1 Event's note.
const maxNote = 1024

// truncate makes s a note: at most maxNote bytes, cut at a character,
// with control characters escaped (notes quote Prometheus' errors and
// query results, which are outside text).
func truncate(s string) string { return untrusted.Text(s, maxNote) }

// logCompleted logs a run that completed with this write.
func logCompleted(ctx context.Context, prev *v1alpha1.AnalysisRunState, run *v1alpha1.AnalysisRun) {
	if !prev.Phase.Completed() && run.Status.Phase.Completed() {
		log.FromContext(ctx).Info("analysis run completed", "phase", run.Status.Phase, "message", run.Status.Message)
	}
}
