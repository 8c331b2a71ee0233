package engine

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// retired runs Retire on the harness's Rollout and persists the result.
func (h *harness) retire(commit string, obs Observations, inForce *plan.Plan) Output {
	h.t.Helper()
	out := Retire(RetireInput{Input: Input{Rollout: h.ro.DeepCopy(), Observations: obs, Now: h.now}, Commit: commit, InForce: inForce})
	if err := out.Plan.Check(); err != nil {
		h.t.Fatalf("retired plan: %v", err)
	}
	h.ro.Status, h.out = out.Status, out
	return out
}

// A Rollout removed from Git in the middle of a canary with a header route,
// a mirror and a running analysis: everything goes back to stable at once,
// the run is stopped, and the status reads as no rollout in progress.
func TestRetireMidRollout(t *testing.T) {
	t.Parallel()
	mirror := v1alpha1.CanaryStep{SetMirror: &v1alpha1.MirrorStep{Percent: 20}}
	h := newHarness(t, standalone("v2", canary(headerRoute("jason", "end-user", "jason"), weight(30), mirror, analysis("rate"), weight(60))))
	for range 6 {
		h.ack()
	}
	h.wantStep(3)
	run := h.ro.Status.Analysis[0].Name
	if h.runPhase(run) != v1alpha1.AnalysisRunning {
		t.Fatalf("analysis %s not running before the removal", run)
	}

	h.now = h.now.Add(time.Minute)
	out := h.retire("4f2a9c1e0b7d4f2a9c1e0b7d4f2a9c1e0b7d4f2a", Observations{}, nil)
	h.wantAllStable()
	st := h.ro.Status
	if st.CanaryRevision != "" || st.CurrentStepIndex != nil || st.Abort != nil || st.Pause != nil || st.StepDisplay != "" {
		t.Errorf("status still has a rollout in progress: %+v", st)
	}
	if st.Phase != v1alpha1.PhaseHealthy || !strings.Contains(st.Message, "at commit 4f2a9c1e0b7d") || !strings.Contains(st.Message, "stable revision v1") {
		t.Errorf("phase %s, message %q: want Healthy naming the commit and the stable revision", st.Phase, st.Message)
	}
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionProgressing, v1alpha1.ConditionPaused, v1alpha1.ConditionAborted} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		want := typ == v1alpha1.ConditionReady
		if c == nil || c.Reason != ReasonRemovedFromGit || (c.Status == "True") != want {
			t.Errorf("condition %s = %+v, want reason %s and status %v", typ, c, ReasonRemovedFromGit, want)
		}
	}
	if stops := h.actions(ActionStopAnalysis); len(stops) != 1 || stops[0].Run.Name != run {
		t.Errorf("stop actions %+v, want one for %s", stops, run)
	}
	if r := st.Analysis[0]; !r.Terminated || !strings.Contains(r.Message, "removed from Git") {
		t.Errorf("run %+v: want terminated, saying why", r)
	}
	if lr := st.LastRollout; lr == nil || lr.Revision != "v2" || lr.Reason != ReasonRemovedFromGit {
		t.Errorf("lastRollout %+v: want v2 recorded as ended by the removal", lr)
	}
	if len(out.Events) != 1 || out.Events[0].Type != EventWarning || out.Events[0].Reason != ReasonRemovedFromGit {
		t.Errorf("events %+v, want one Warning %s", out.Events, ReasonRemovedFromGit)
	}
	tr := st.Traffic
	if tr.PlanVersion != out.Plan.Version || tr.StableWeight != 100 || tr.CanaryWeight != 0 || tr.MirrorPercent != 0 || len(tr.Routes) != 0 {
		t.Errorf("traffic status %+v does not describe the published plan %s", tr, out.Plan.Version)
	}
	if got := h.routeNames(); len(got) != 1 || got[0] != "primary" {
		t.Errorf("routes %v, want the catch-all only", got)
	}
	if !Retired(&st) {
		t.Error("Retired is false after Retire")
	}
}

// The status Retire persists rebuilds to the very plan it published, so a
// follower replica serving from status serves 100% stable too.
func TestRetiredStatusRebuildsThePublishedPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		steps []v1alpha1.CanaryStep
		acks  int
	}{
		{"mid canary", []v1alpha1.CanaryStep{weight(40), pauseForever()}, 3},
		{"before the first step", []v1alpha1.CanaryStep{weight(40)}, 0},
		{"aborted", []v1alpha1.CanaryStep{weight(40), pauseForever()}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := standalone("v2", canary(tc.steps...))
			ro.Spec.Service.Policy = &v1alpha1.RoutePolicy{Timeout: dur(3 * time.Second)}
			h := newHarness(t, ro)
			for range tc.acks {
				h.ack()
			}
			if tc.acks < 0 {
				h.command("abort-1", v1alpha1.CommandAbort)
			}
			out := h.retire("c0ffee", Observations{}, nil)
			got, err := PersistedPlan(h.ro)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != out.Plan.Version {
				t.Fatalf("rebuilt plan %s, published %s", got.Version, out.Plan.Version)
			}
			if p := got.Hosts[0].Routes[0].Policy; p == nil || p.Timeout != 3*time.Second {
				t.Errorf("route policy %+v: want the spec's timeout kept", p)
			}
		})
	}
}

// Retiring again is quiet: no second Event or stop, the same plan, and the
// data plane's acknowledgement of that plan is recorded so nothing waits.
// Commands get an answer (refused); a rejection of the plan is reported.
func TestRetireAgainIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(40), pauseForever())))
	h.ack()
	first := h.retire("c0ffee", Observations{}, nil)
	again := h.retire("decaf", Observations{DataPlane: DataPlane{Version: first.Plan.Version, State: AckAcknowledged}}, nil)
	if len(again.Events) != 0 || len(again.Actions) != 0 {
		t.Errorf("second retire: events %+v, actions %+v; want none", again.Events, again.Actions)
	}
	if again.Plan.Version != first.Plan.Version || h.ro.Status.Traffic.AcknowledgedVersion != first.Plan.Version {
		t.Errorf("plan %s acknowledged %q; want %s, acknowledged", again.Plan.Version, h.ro.Status.Traffic.AcknowledgedVersion, first.Plan.Version)
	}
	if !strings.Contains(h.ro.Status.Message, "c0ffee") {
		t.Errorf("message %q: want the commit of the removal kept", h.ro.Status.Message)
	}
	cmd := h.retire("decaf", Observations{Commands: []Command{{ID: "c1", Kind: v1alpha1.CommandPromote, By: "alice"}}}, nil)
	if lc := h.ro.Status.LastCommand; lc == nil || lc.ID != "c1" || !strings.HasPrefix(lc.Result, "refused") || len(cmd.Events) != 1 {
		t.Errorf("lastCommand %+v, events %+v: want the promote refused and reported", lc, cmd.Events)
	}
	rejected := h.retire("decaf", Observations{DataPlane: DataPlane{Version: first.Plan.Version, State: AckRejected, Message: "bad route"}}, nil)
	if len(rejected.Events) != 1 || rejected.Events[0].Reason != v1alpha1.ReasonNack {
		t.Errorf("events %+v, want the rejection reported", rejected.Events)
	}
}

// Without the spec (standalone mode) the plan in force is cut down:
// header routes, mirrors and preview-only hosts go, the catch-all keeps its
// policy at 100% stable.
func TestRetireCutsThePlanInForce(t *testing.T) {
	t.Parallel()
	pol := &plan.Policy{Timeout: 2 * time.Second}
	inForce := plan.Plan{Service: "reviews", Subsets: []plan.Subset{{Name: plan.Stable, Revision: "v1"}, {Name: plan.Canary, Revision: "v2"}}, Hosts: []plan.Host{
		{Name: "reviews", Port: 9080, Routes: []plan.Route{
			{Name: "jason", Match: []plan.Match{{Headers: []plan.HeaderMatch{{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}}}}, Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}},
			{Name: "primary", Destinations: split(30), Mirror: &plan.Mirror{Subset: plan.Canary, Percent: 10}, Policy: pol},
		}},
		{Name: "preview.reviews", Port: 9080, Routes: []plan.Route{{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}}}},
	}}
	inForce.Seal()
	ro := standalone("v2", canary(weight(30)))
	ro.Spec = v1alpha1.RolloutSpec{} // the manifest left Git
	ro.Status.CanaryRevision = "v2"
	out := Retire(RetireInput{Input: Input{Rollout: ro, Now: t0}, Commit: "c0ffee", InForce: &inForce})
	p := out.Plan
	if len(p.Subsets) != 1 || len(p.Hosts) != 1 || len(p.Hosts[0].Routes) != 1 {
		t.Fatalf("plan %+v: want one host, one route, the stable subset only", p)
	}
	r := p.Hosts[0].Routes[0]
	if r.Mirror != nil || r.Policy != pol || len(r.Destinations) != 1 || r.Destinations[0] != (plan.Destination{Subset: plan.Stable, Weight: 100}) {
		t.Errorf("route %+v: want 100%% stable with the policy, no mirror", r)
	}
	if out.Status.Traffic.PlanVersion != p.Version {
		t.Errorf("status plan %s, published %s", out.Status.Traffic.PlanVersion, p.Version)
	}
}

// In controller mode the stable revision keeps its replicas; the canary's
// are no longer listed (scaled to zero).
func TestRetireScalesToStable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, controllerMode(standalone("v2", canary(weight(40), pauseForever())), "reviews:v2", 4))
	h.workload = &Workload{StableAvailable: 4, CanaryAvailable: 4}
	h.ack()
	h.ack()
	out := h.retire("c0ffee", Observations{}, nil)
	stable := h.ro.Status.StableRevision
	if len(out.Scale) != 1 || out.Scale[0] != (Scale{Revision: stable, Replicas: 4}) {
		t.Errorf("scale %+v, want only %s at 4", out.Scale, stable)
	}
}
