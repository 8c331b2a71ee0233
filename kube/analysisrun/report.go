package analysisrun

import (
	"context"
	"fmt"

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

// analysisSeries are the analysis metrics, registered on
// controller-runtime's registry so the manager's /metrics serves them
// beside its own: rolloutmetrics', the same `sluice run` serves. The
// values are set from each run's persisted status, the measurements
// counted from the differences of two.
var analysisSeries = rolloutmetrics.NewAnalysis()

func init() {
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
// remembers its Rollout, for dropValues.
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

// report emits the Events and counts the measurements of one persisted
// status write, prev being the status it replaced.
func (r *Reconciler) report(ctx context.Context, prev *v1alpha1.AnalysisRunState, run *v1alpha1.AnalysisRun) {
	analysisSeries.CountMeasurements(run.Namespace, prev, &run.Status)
	r.showValues(run)
	for _, e := range completions(prev, &run.Status) {
		r.Recorder.Eventf(run, nil, e.typ, e.reason, e.action, "%s", e.note)
	}
	logCompleted(ctx, prev, run)
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
