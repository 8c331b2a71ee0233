package analysis

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestWithEngine wires a run to the rollout engine the way an adapter
// does: the engine's StartAnalysis action creates the run, the run's
// Observation goes back to the engine, and the Rollout's status shows the
// per-metric summary; a Failed run aborts the rollout.
func TestWithEngine(t *testing.T) {
	t.Parallel()
	m := thresholdMetric("success-rate")
	m.FailureLimit = i32(1)
	templates := map[string]*v1alpha1.AnalysisTemplate{"success-rate": template("success-rate", m)}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080},
			Backend: &v1alpha1.Backend{Version: "v2", Endpoints: []string{"127.0.0.1:9001"}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: i32(20)},
				{Analysis: &v1alpha1.AnalysisStep{Templates: []v1alpha1.TemplateRef{{Name: "success-rate"}}}},
			}}},
		},
		Status: v1alpha1.RolloutStatus{StableRevision: "v1", StableBackend: &v1alpha1.Backend{Version: "v1", Endpoints: []string{"127.0.0.1:9000"}}},
	}
	now := t0
	var run *v1alpha1.AnalysisRun
	var out engine.Output
	step := func(obs engine.Observations) {
		t.Helper()
		var err error
		out, err = engine.Step(engine.Input{Rollout: ro.DeepCopy(), Observations: obs, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		ro.Status = out.Status
		for _, a := range out.Actions {
			if a.Kind != engine.ActionStartAnalysis {
				continue
			}
			var tpls []*v1alpha1.AnalysisTemplate
			for _, ref := range a.Run.Templates {
				tpls = append(tpls, templates[ref.Name])
			}
			if run, err = NewRun(a.Run.Name, ro.Namespace, tpls, a.Run.Args); err != nil {
				t.Fatal(err)
			}
		}
	}
	ack := func() engine.Observations {
		return engine.Observations{DataPlane: engine.DataPlane{Version: out.Plan.Version, State: engine.AckAcknowledged}}
	}
	step(engine.Observations{})
	for i := 0; run == nil; i++ {
		if i > 10 {
			t.Fatalf("the engine never started the analysis run: %+v", ro.Status)
		}
		step(ack())
	}
	sc := script{"success-rate": {good, bad, bad}}
	for i := 0; !run.Status.Phase.Completed(); i++ {
		if i > 100 {
			t.Fatal("run did not complete")
		}
		now = drive(t, run, now, now.Add(10*time.Second), sc.measure)
		obs := ack()
		obs.Analysis = []engine.AnalysisObservation{Observation(run)}
		step(obs)
		now = now.Add(10 * time.Second)
	}

	if ro.Status.Abort == nil || ro.Status.Abort.Reason != v1alpha1.ReasonAnalysisFailed || ro.Status.Traffic.CanaryWeight != 0 {
		t.Fatalf("rollout not aborted by the failed run: abort %+v, traffic %+v", ro.Status.Abort, ro.Status.Traffic)
	}
	if len(ro.Status.Analysis) != 1 {
		t.Fatalf("status.analysis %+v", ro.Status.Analysis)
	}
	rs := ro.Status.Analysis[0]
	want := v1alpha1.MetricSummary{
		Name: "success-rate", Phase: v1alpha1.AnalysisFailed, LastValue: "[0.9]", Successful: 1, Failed: 2,
		Message: "2 failed measurements, more than failureLimit 1; last: value [0.9]: failureCondition `result[0] < 0.95` is true",
	}
	if rs.Phase != v1alpha1.AnalysisFailed || len(rs.Metrics) != 1 || rs.Metrics[0] != want {
		t.Fatalf("status.analysis[0] = %+v\nwant metrics [%+v]", rs, want)
	}
	if !strings.Contains(ro.Status.Abort.Message, "success-rate: 2 failed measurements") {
		t.Errorf("abort message %q does not say why", ro.Status.Abort.Message)
	}
}
