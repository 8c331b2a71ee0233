package engine

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func setRevision(r v1alpha1.RevisionStep) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{SetRevision: &r}
}

func backend(v string) *v1alpha1.Backend {
	return &v1alpha1.Backend{Version: v, Endpoints: []string{"127.0.0.1:9002"}}
}

// destinations renders a route's destinations as subset=weight pairs.
func destinations(r plan.Route) []string {
	var out []string
	for _, d := range r.Destinations {
		out = append(out, d.Subset+"="+itoa(d.Weight))
	}
	return out
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// TestBookinfoThreeRevisions is bookinfo's reviews case: v1 and v3 split
// 50/50 while end-user jason always sees v2, an extra revision. v2's
// subset reaches the data plane at 0% before its route does; abort returns
// everything to stable and stops v2; promotion stops it too.
func TestBookinfoThreeRevisions(t *testing.T) {
	t.Parallel()
	ro := standalone("v3", canary(
		setRevision(v1alpha1.RevisionStep{Name: "jason", Backend: backend("v2"), Match: []v1alpha1.RouteMatch{jason("end-user", "jason")}}),
		weight(50),
		pauseForever(),
	))
	h := &harness{t: t, ro: ro, now: t0}
	h.step(Observations{})
	// The extra subset is added at 0% first, with the canary's: no route
	// to it yet.
	if got := h.routeNames(); !slices.Equal(got, []string{"primary"}) {
		t.Fatalf("before v2 is known: routes %v, want only primary", got)
	}
	if x := h.ro.Status.ExtraRevisions; len(x) != 1 || x[0].Name != "jason" || x[0].Revision != "v2" || x[0].Backend.Version != "v2" {
		t.Fatalf("status.extraRevisions = %+v", x)
	}
	if h.out.Plan.Revision("jason") != "v2" {
		t.Fatalf("plan subsets %+v, want jason → v2", h.out.Plan.Subsets)
	}
	h.ack() // v2 known: its route goes out
	if got := h.routeNames(); !slices.Equal(got, []string{"revision-jason", "primary"}) {
		t.Fatalf("routes %v, want revision-jason then primary", got)
	}
	h.ack() // step 1 done; setWeight 50
	h.ack()
	h.wantStep(2)
	routes := h.out.Plan.Hosts[0].Routes
	if got := destinations(routes[1]); !slices.Equal(got, []string{"stable=50", "canary=50", "jason=0"}) {
		t.Fatalf("primary %v, want stable 50, canary 50, jason 0", got)
	}
	if r := routes[0]; r.Destinations[0] != (plan.Destination{Subset: "jason", Weight: 100}) || r.Match[0].Headers[0].Value != "jason" {
		t.Fatalf("jason's route %+v", r)
	}
	if sub := h.ro.Status.Traffic.Subsets; len(sub) != 3 || sub[2].Name != "jason" || !sub[2].Acknowledged {
		t.Fatalf("status.traffic.subsets %+v", sub)
	}

	h.command("a", v1alpha1.CommandAbort)
	h.wantAllStable()
	if len(h.ro.Status.ExtraRevisions) != 0 || h.out.Plan.Revision("jason") != "" {
		t.Fatalf("abort left extra revisions: %+v, plan %+v", h.ro.Status.ExtraRevisions, h.out.Plan.Subsets)
	}

	h.command("r", v1alpha1.CommandRetry)
	h.warmup()
	h.ack()
	h.ack()
	h.ack()
	h.wantStep(2)
	h.command("p", v1alpha1.CommandPromote)
	h.ack()
	h.wantPhase(v1alpha1.PhaseHealthy)
	if len(h.ro.Status.ExtraRevisions) != 0 || h.out.Plan.Revision("jason") != "" {
		t.Fatalf("promotion left extra revisions: %+v", h.ro.Status.ExtraRevisions)
	}
}

// TestExtraRevisionWeightAndDuration: a baseline takes its weight from
// stable's share, ends after its duration, and its analysis arguments name
// it as the baseline.
func TestExtraRevisionWeightAndDuration(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(
		weight(10),
		setRevision(v1alpha1.RevisionStep{Name: "base-line", Backend: backend("v1-baseline"), Weight: 10, Duration: dur(time.Minute)}),
		v1alpha1.CanaryStep{Analysis: &v1alpha1.AnalysisStep{Templates: []v1alpha1.TemplateRef{{Name: "compare"}}, Baseline: "base-line"}},
		pauseForever(),
	))
	h := newHarness(t, ro)
	h.ack() // 10%
	h.ack() // base-line subset at 0%
	h.ack() // base-line at 10%
	h.wantStep(2)
	if got := destinations(h.out.Plan.Hosts[0].Routes[0]); !slices.Equal(got, []string{"stable=80", "canary=10", "base-line=10"}) {
		t.Fatalf("primary %v, want stable 80, canary 10, base-line 10", got)
	}
	var args map[string]string
	for _, a := range h.out.Actions {
		if a.Kind == ActionStartAnalysis {
			args = map[string]string{}
			for _, arg := range a.Run.Args {
				args[arg.Name] = arg.Value
			}
		}
	}
	want := map[string]string{"stableRevision": "v1-baseline", "stableSubset": "base-line", "canaryRevision": "v2", "canarySubset": "canary", "revision_base_line": "v1-baseline", "subset_base_line": "base-line"}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("analysis argument %s = %q, want %q (all: %v)", k, args[k], v, args)
		}
	}
	x := h.ro.Status.ExtraRevisions
	if len(x) != 1 || x[0].EndsAt == nil {
		t.Fatalf("extra revision %+v, want an end time", x)
	}
	if h.out.RequeueAfter <= 0 || h.out.RequeueAfter > time.Minute {
		t.Errorf("requeue after %s, want the end within a minute", h.out.RequeueAfter)
	}
	h.advance(time.Minute)
	if x := h.ro.Status.ExtraRevisions; len(x) != 1 || !x[0].Ended {
		t.Fatalf("after its duration: %+v, want ended", x)
	}
	if got := destinations(h.out.Plan.Hosts[0].Routes[0]); !slices.Equal(got, []string{"stable=90", "canary=10"}) {
		t.Fatalf("primary after the end %v, want stable 90, canary 10", got)
	}
	if !slices.ContainsFunc(h.out.Events, func(e Event) bool { return e.Reason == v1alpha1.ReasonRevisionEnded }) {
		t.Errorf("no %s event: %+v", v1alpha1.ReasonRevisionEnded, h.out.Events)
	}
}

// TestRetireStopsExtraRevisions: a Rollout removed from Git mid-rollout
// keeps no extra revision in status, and none is scaled.
func TestRetireStopsExtraRevisions(t *testing.T) {
	t.Parallel()
	ro := controllerMode(standalone("v3", canary(
		setRevision(v1alpha1.RevisionStep{Name: "baseline", Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromStable}, Weight: 10}),
		pauseForever(),
	)), "reviews:v3", 4)
	h := newHarness(t, ro)
	if len(h.ro.Status.ExtraRevisions) != 1 {
		t.Fatalf("extra revisions before retiring: %+v", h.ro.Status.ExtraRevisions)
	}
	base := h.ro.Status.ExtraRevisions[0].Revision
	if !slices.ContainsFunc(h.out.Scale, func(s Scale) bool { return s.Revision == base && s.Replicas == 1 }) {
		t.Fatalf("scale %+v, want the baseline at 1", h.out.Scale)
	}
	out := Retire(RetireInput{Input: Input{Rollout: h.ro.DeepCopy(), Now: h.now}, Commit: "c0ffee"})
	if len(out.Status.ExtraRevisions) != 0 {
		t.Errorf("retired status keeps extra revisions: %+v", out.Status.ExtraRevisions)
	}
	if slices.ContainsFunc(out.Scale, func(s Scale) bool { return s.Revision == base }) {
		t.Errorf("retired scale %+v still runs the baseline", out.Scale)
	}
}
