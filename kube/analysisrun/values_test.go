package analysisrun

import (
	"context"
	"math"
	"testing"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestValueSeries measures a real canary through the controller and
// reads what the manager's registry (the one /metrics serves) shows of
// it: the value series equals the value the run recorded and stays after
// the run completes, the thresholds are the conditions' numbers, both
// carry the owning Rollout's name, a run without a Rollout has none, and
// deleting the run removes them.
func TestValueSeries(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := newNamespace(t, c)
	const service = "valueseries"
	serve(t, service, 0)
	startManager(t, ns, defaultAt(prometheusURL(t)))

	tpl := &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gate"},
		Spec:       v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{successMetric(2)}},
	}
	args := []v1alpha1.Argument{{Name: "service", Value: service}, {Name: "canaryRevision", Value: "v2"}}
	create := func(name string, owned bool) types.NamespacedName {
		run, err := analysis.NewRun(name, ns, []*v1alpha1.AnalysisTemplate{tpl}, args)
		if err != nil {
			t.Fatal(err)
		}
		if owned {
			ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews", UID: types.UID("0b7a3b7e-0000-4000-8000-000000000001")}}
			run.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ro, workload.RolloutKind)}
		}
		if err := c.Create(context.Background(), run); err != nil {
			t.Fatal(err)
		}
		return client.ObjectKeyFromObject(run)
	}
	owned := create("reviews-v2-1-step2", true)
	orphan := create("handmade", false)

	run := waitRun(t, c, owned, "the run completes", completed)
	waitRun(t, c, orphan, "the hand-made run completes", completed)
	r := metricResult(t, run, "success-rate")
	last := r.Measurements[len(r.Measurements)-1]
	want, ok := rolloutmetrics.ParseValue(last.Value)
	if !ok || want != 1 {
		t.Fatalf("last measurement %q: want 1, every request of the canary succeeds", last.Value)
	}
	var got map[string]float64
	poll.Until(t, "the analysis series of the run", func() bool {
		got = analysisSeriesOf(t, ns)
		return len(got) == 3
	})
	for series, w := range map[string]float64{
		"sluice_analysis_metric_value{rollout=reviews,metric=success-rate}":                       want,
		"sluice_analysis_metric_threshold{rollout=reviews,metric=success-rate,condition=success}": 0.99,
		"sluice_analysis_metric_threshold{rollout=reviews,metric=success-rate,condition=failure}": 0.9,
	} {
		if v, ok := got[series]; !ok || math.Abs(v-w) > 1e-12 {
			t.Errorf("%s = %v (present %v), want %v; all: %v", series, v, ok, w, got)
		}
	}

	if err := c.Delete(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "no analysis series once the run is deleted", func() bool {
		return len(analysisSeriesOf(t, ns)) == 0
	})
}

// analysisSeriesOf gathers the controller-runtime registry and returns the
// analysis value and threshold series of namespace ns, by a name with
// their other labels.
func analysisSeriesOf(t *testing.T, ns string) map[string]float64 {
	t.Helper()
	fams, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "sluice_analysis_metric_value" && f.GetName() != "sluice_analysis_metric_threshold" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "namespace") != ns {
				continue
			}
			name := f.GetName() + "{rollout=" + label(m, "rollout") + ",metric=" + label(m, "metric")
			if c := label(m, "condition"); c != "" {
				name += ",condition=" + c
			}
			out[name+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
