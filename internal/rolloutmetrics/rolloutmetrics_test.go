package rolloutmetrics

import (
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Record follows the status it is given: the stale count, the phase, a
// completed run counted once; Forget drops the Rollout's series.
func TestRecordAndForget(t *testing.T) {
	t.Parallel()
	m := New()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	step := int32(1)
	cur := &v1alpha1.RolloutStatus{
		Phase: v1alpha1.PhaseProgressing, CanaryRevision: "v2", CurrentStepIndex: &step,
		Traffic:  v1alpha1.TrafficStatus{CanaryWeight: 20, StaleNodes: &v1alpha1.StaleNodesStatus{Count: 3, Nodes: []string{"a", "b", "c"}}},
		Analysis: []v1alpha1.AnalysisRunStatus{{Name: "r1", Kind: v1alpha1.AnalysisStepKind, Phase: v1alpha1.AnalysisSuccessful}},
	}
	m.Record("ns", "reviews", nil, cur)
	m.Record("ns", "reviews", cur, cur) // the same run again: not counted twice
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"stale nodes", m.Gauges.StaleNodes("ns", "reviews"), 3},
		{"step", m.Gauges.Step("ns", "reviews"), 2},
		{"weight", m.Gauges.CanaryWeight("ns", "reviews"), 20},
		{"phase Progressing", m.Gauges.Phase("ns", "reviews", v1alpha1.PhaseProgressing), 1},
		{"phase Healthy", m.Gauges.Phase("ns", "reviews", v1alpha1.PhaseHealthy), 0},
		{"runs", m.AnalysisRuns.Value("ns", "reviews", v1alpha1.AnalysisStepKind, v1alpha1.AnalysisSuccessful), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	cur.Traffic.StaleNodes = nil
	m.Record("ns", "reviews", cur, cur)
	if v := m.Gauges.StaleNodes("ns", "reviews"); v != 0 {
		t.Errorf("stale nodes = %v once none is, want 0", v)
	}
	// Every kind and outcome is counted from the first status on.
	if v := m.AnalysisRuns.Value("ns", "reviews", v1alpha1.AnalysisPostPromotion, v1alpha1.AnalysisFailed); v != 0 {
		t.Errorf("PostPromotion Failed runs = %v, want 0", v)
	}
	if n := testutil.CollectAndCount(m.AnalysisRuns); n != 20 {
		t.Errorf("%d analysis run series, want 20 (5 kinds × 4 outcomes)", n)
	}
	m.Forget("ns", "reviews")
	// The reconcile histogram has no rollout label: only its three results
	// are left, at 0.
	if n := testutil.CollectAndCount(reg); n != 3 {
		t.Errorf("%d series left after Forget, want the 3 reconcile results", n)
	}
	m.Record("ns", "reviews", nil, cur)
	if v := m.AnalysisRuns.Value("ns", "reviews", v1alpha1.AnalysisStepKind, v1alpha1.AnalysisSuccessful); v != 1 {
		t.Errorf("runs after the Rollout came back = %v, want 1", v)
	}
}

// The analysis run counter, made at scrape time, is a counter family with
// the four labels, one series per kind and outcome, the count where a run
// completed.
func TestAnalysisRunsScraped(t *testing.T) {
	t.Parallel()
	m := New()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	cur := &v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseDegraded, Analysis: []v1alpha1.AnalysisRunStatus{
		{Name: "r1", Kind: v1alpha1.AnalysisBackgroundKind, Phase: v1alpha1.AnalysisFailed},
	}}
	m.Record("shop", "cart", nil, cur)
	m.Record("shop", "web", nil, &v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseHealthy})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, mf := range mfs {
		if mf.GetName() != "sluice_rollout_analysis_runs_total" {
			continue
		}
		found = true
		if mf.GetType().String() != "COUNTER" {
			t.Errorf("type %s, want COUNTER", mf.GetType())
		}
		if n := len(mf.GetMetric()); n != 40 {
			t.Errorf("%d series, want 40 (2 Rollouts × 5 kinds × 4 outcomes)", n)
		}
		var total float64
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			total += s.GetCounter().GetValue()
			if l["rollout"] == "cart" && l["kind"] == "Background" && l["phase"] == "Failed" && s.GetCounter().GetValue() != 1 {
				t.Errorf("cart's Background Failed runs = %v, want 1", s.GetCounter().GetValue())
			}
		}
		if total != 1 {
			t.Errorf("all runs = %v, want 1", total)
		}
	}
	if !found {
		t.Error("sluice_rollout_analysis_runs_total not gathered")
	}
}

// The gauges, made at scrape time, are gauge families with the labels
// they had as vectors: four phase series per Rollout, 1 for its phase,
// and one step, weight and stale-node series.
func TestGaugesScraped(t *testing.T) {
	t.Parallel()
	m := New()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	step := int32(0)
	m.Record("shop", "cart", nil, &v1alpha1.RolloutStatus{Phase: v1alpha1.PhasePaused, CanaryRevision: "v2", CurrentStepIndex: &step,
		Traffic: v1alpha1.TrafficStatus{CanaryWeight: 30}})
	m.Record("shop", "web", nil, &v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseHealthy})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType().String() != "GAUGE" {
			continue
		}
		for _, s := range mf.GetMetric() {
			key := mf.GetName()
			for _, p := range s.GetLabel() {
				key += " " + p.GetName() + "=" + p.GetValue()
			}
			got[key] = s.GetGauge().GetValue()
		}
	}
	want := map[string]float64{}
	for _, r := range []struct {
		name                string
		phase               v1alpha1.Phase
		step, weight, stale float64
	}{{"cart", v1alpha1.PhasePaused, 1, 30, 0}, {"web", v1alpha1.PhaseHealthy, 0, 0, 0}} {
		labels := " namespace=shop rollout=" + r.name
		for _, p := range phases {
			v := 0.0
			if p == r.phase {
				v = 1
			}
			// Gathered labels come sorted by name.
			want["sluice_rollout_phase namespace=shop phase="+string(p)+" rollout="+r.name] = v
		}
		want["sluice_rollout_step"+labels] = r.step
		want["sluice_rollout_canary_weight"+labels] = r.weight
		want["sluice_rollout_stale_nodes"+labels] = r.stale
	}
	if !maps.Equal(got, want) {
		t.Errorf("gauges scraped:\n%v\nwant:\n%v", got, want)
	}
}
