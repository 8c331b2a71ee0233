package engine

// Minimal reproducers of the engine bugs the property tests found, one test
// per bug, each named after the property that caught it. They fail until
// the bug is fixed; delete nothing when it is, they are regression tests.

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// repro drives one Rollout by hand: a fake clock and persisted status.
type repro struct {
	t    *testing.T
	ro   *v1alpha1.Rollout
	now  time.Time
	last Output
}

// newRepro makes a standalone Rollout named app serving v1 behind host app.
func newRepro(t *testing.T, st v1alpha1.Strategy) *repro {
	t.Helper()
	r := &repro{t: t, now: simStart, ro: &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: "app", Hosts: []string{"app"}, Port: 8080},
			Backend:  simBackend("v1", "10.0.0.1"),
			Strategy: st,
		},
	}}
	return r
}

func (r *repro) step(obs Observations) Output {
	r.t.Helper()
	out, err := propStep(Input{Rollout: r.ro.DeepCopy(), Observations: obs, Now: r.now})
	if err != nil {
		r.t.Fatalf("Step: %v", err)
	}
	r.ro.Status = out.Status
	r.last = out
	return out
}

func (r *repro) push(version string) Output {
	r.t.Helper()
	r.ro.Spec.Backend = simBackend(version, "10.0.0.2")
	r.ro.Generation++
	out := r.step(Observations{})
	// The first step adds the canary subset at 0% and waits for it to be
	// acknowledged; the reproducers start after that.
	if strings.Contains(out.Status.Message, warmupMessage) {
		out = r.step(r.ack())
	}
	return out
}

func (r *repro) ack() Observations {
	return Observations{DataPlane: DataPlane{Version: r.ro.Status.Traffic.PlanVersion, State: AckAcknowledged}}
}

func (r *repro) cmd(id string, kind v1alpha1.CommandKind) Observations {
	return Observations{Commands: []Command{{ID: id, Kind: kind, By: "alice"}}}
}

func (r *repro) run(name string, phase v1alpha1.AnalysisPhase) Observations {
	return Observations{Analysis: []AnalysisObservation{{Name: name, Phase: phase, Message: "error-rate 0.07"}}}
}

func (r *repro) startedRuns(out Output) []string {
	var names []string
	for _, a := range out.Actions {
		if a.Kind == ActionStartAnalysis {
			names = append(names, a.Run.Name)
		}
	}
	return names
}

// plan_check (every property; seeds 10, 59, 86, 97, 230, 282): a route
// policy whose only setting is a fault limited by match makes every Step
// panic (nil *plan.Policy in faultRoute), so the controller crash-loops.
func TestReproFaultWithMatchOnlyPolicyPanics(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{}})
	r.ro.Spec.Service.Policy = &v1alpha1.RoutePolicy{Fault: &v1alpha1.FaultPolicy{
		Abort: &v1alpha1.FaultAbort{HTTPStatus: simI32(503), Percent: 10},
		Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "x-chaos", Exact: simStr("on")}}}},
	}}
	out := r.step(Observations{})
	if err := out.Plan.Check(); err != nil {
		t.Fatal(err)
	}
}

// fixpoint (seeds 3, 14, 21, 24, ...): spec.paused is checked before the
// commands are applied, so retry (or resume / promote from another pause)
// moves the rollout one step while spec.paused is true; the next Step
// notices and pauses, after the traffic has moved.
func TestReproSpecPausedBypassedByRetry(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), simPause(0)}}})
	r.step(Observations{})
	r.push("v2")
	r.step(r.cmd("1", v1alpha1.CommandAbort))
	r.ro.Spec.Paused = true
	r.ro.Generation++
	out := r.step(r.cmd("2", v1alpha1.CommandRetry))
	if out.Status.Phase != v1alpha1.PhasePaused || out.Status.CurrentStepIndex != nil || out.Status.Traffic.CanaryWeight != 0 {
		t.Errorf("retry under spec.paused: phase %s, step %v, canary weight %d; want Paused before step 1 with no canary traffic (events %s)",
			out.Status.Phase, propDeref(out.Status.CurrentStepIndex), out.Status.Traffic.CanaryWeight, propJSON(out.Events))
	}
}

// fixpoint (seeds 9, 37, 56, 68, ...): when canary readiness flaps before a
// step is acknowledged, the plan went A → B (held back) → A, and the ACK of
// the first A counted for the republished A with no new ACK: pauses and
// analysis started while proxies might still be on B. Since the traffic in
// force is never taken back for readiness (routedSteps), the plan no longer
// flips: A stays A, and only an ACK of it counts.
func TestReproStaleAckAfterPlanFlipsBack(t *testing.T) {
	t.Parallel()
	// Step 2 (40%) needs 4 canary replicas; readiness flaps between 2 and 4.
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), simWeight(40), simPause(time.Hour)}}})
	r.ro.Spec.Backend = nil
	r.ro.Spec.Replicas = simI32(10)
	r.ro.Spec.Template = simBookinfoTemplate("v1")
	ready := &Workload{StableAvailable: 10, CanaryAvailable: 4}
	short := &Workload{StableAvailable: 10, CanaryAvailable: 2}
	ackWith := func(w *Workload) Observations { o := r.ack(); o.Workload = w; return o }
	r.step(Observations{Workload: ready})
	r.ro.Spec.Template = simBookinfoTemplate("v2")
	r.ro.Generation++
	r.step(Observations{Workload: ready})      // warm-up: the canary subset at 0%
	r.step(ackWith(ready))                     // step 1: 20%
	a := r.step(ackWith(ready))                // step 2: A, 40% to the canary
	b := r.step(Observations{Workload: short}) // readiness drops before the ACK
	c := r.step(Observations{Workload: ready})
	if i := r.ro.Status.CurrentStepIndex; i == nil || *i != 1 || a.Plan.Version != b.Plan.Version || b.Plan.Version != c.Plan.Version {
		t.Fatalf("step %v, plans %s → %s → %s; want step 2 (index 1) and A kept throughout", propDeref(i), a.Plan.Version, b.Plan.Version, c.Plan.Version)
	}
	if c.Status.StepAcknowledgedAt != nil {
		t.Errorf("step acknowledged with no ACK of plan %s", c.Plan.Version)
	}
	if out := r.step(ackWith(short)); out.Status.StepAcknowledgedAt == nil || out.Plan.Version != a.Plan.Version {
		t.Errorf("ACK of plan %s with readiness down: acknowledged at %v, plan %s; want acknowledged, plan kept", a.Plan.Version, out.Status.StepAcknowledgedAt, out.Plan.Version)
	}
}

// run_outcomes_final (seeds 18, 35, 36, 39, ...): a stale observation
// of a completed run (e.g. from a lagging informer after a leader change)
// overwrites its outcome; the engine then stops a finished run, or reacts
// to the same failure twice.
func TestReproCompletedRunOutcomeOverwritten(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
		{Analysis: simAnalysis("error-rate")}, simWeight(20), simPause(0),
	}}})
	r.step(Observations{})
	r.push("v2")
	name := r.step(r.ack()).Status.Analysis[0].Name
	r.step(r.run(name, v1alpha1.AnalysisSuccessful))
	out := r.step(r.run(name, v1alpha1.AnalysisRunning))
	got := out.Status.Analysis[0]
	if got.Phase != v1alpha1.AnalysisSuccessful || got.Terminated || len(out.Actions) > 0 {
		t.Errorf("after a stale Running observation, run %s is %s (terminated %v), actions %s; want Successful kept and nothing done",
			name, got.Phase, got.Terminated, propJSON(out.Actions))
	}
}

// run_names_never_reused (seeds 87, 92, 141, 163): run names are
// rollout-revision-attempt-step with the attempt reset to 1 by every new
// rollout, so rolling out a revision again (push v2, revert to v1, push v2)
// reuses the names of the first time. StartAnalysis is idempotent by name:
// the adapter hands back the old run and its old verdict.
func TestReproRunNamesReusedWhenRevisionComesBack(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
		{Analysis: simAnalysis("error-rate")}, simWeight(20),
	}}})
	r.step(Observations{})
	r.push("v2")
	first := r.startedRuns(r.step(r.ack()))
	r.push("v1")
	r.push("v2")
	second := r.startedRuns(r.step(r.ack()))
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("setup: started %v then %v", first, second)
	}
	if first[0] == second[0] {
		t.Errorf("second rollout of v2 starts run %s, the name of the first rollout's run", second[0])
	}
}

// promotion_acknowledged (seed 96): editing the steps of a rollout in
// progress keeps currentStepIndex and stepAcknowledgedAt. Removing steps
// puts the index at or past the end, which is promotion, already
// "acknowledged": the revision is promoted at once from 30%, without the
// 100% plan ever being published, and the pause still in the new steps is
// skipped. (Changing a step's kind in place likewise completes it on the
// old step's ACK.)
func TestReproStepsEditedMidRolloutPromoteUnacknowledged(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
		simWeight(10), simWeight(20), simWeight(30), simPause(time.Hour),
	}}})
	r.step(Observations{})
	r.push("v2")
	for range 4 {
		r.now = r.now.Add(time.Second)
		r.step(r.ack())
	}
	if i := r.ro.Status.CurrentStepIndex; i == nil || *i != 3 {
		t.Fatalf("setup: at step %v, want 3 (the pause)", propDeref(i))
	}
	r.ro.Spec.Strategy.Canary.Steps = []v1alpha1.CanaryStep{simWeight(10), simPause(time.Hour)}
	r.ro.Generation++
	r.now = r.now.Add(time.Second)
	out := r.step(Observations{})
	if out.Status.StableRevision != "v1" {
		t.Errorf("steps edited at 30%%: promoted %s to stable in the same Step (events %s)", out.Status.StableRevision, propJSON(out.Events))
	}
}

// progress_has_a_way_forward (seeds 39, 110, 168, 218, 246): an
// inconclusive analysis step pauses; resume clears the pause but the step
// still needs a Successful run that will never come. The rollout then says
// Progressing ("analysis run … running") forever, with no requeue; only
// promote or abort get it out. Same with onAnalysisFailure: Pause.
func TestReproResumeAfterInconclusiveHangs(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
		simWeight(20), {Analysis: simAnalysis("error-rate")}, simWeight(50),
	}}})
	r.step(Observations{})
	r.push("v2")
	name := r.step(r.ack()).Status.Analysis[0].Name
	if out := r.step(r.run(name, v1alpha1.AnalysisInconclusive)); out.Status.Phase != v1alpha1.PhasePaused {
		t.Fatalf("setup: inconclusive run left phase %s", out.Status.Phase)
	}
	out := r.step(r.cmd("1", v1alpha1.CommandResume))
	running := false
	for _, run := range out.Status.Analysis {
		running = running || (run.Phase == v1alpha1.AnalysisRunning && !run.Terminated)
	}
	if out.Status.Phase == v1alpha1.PhaseProgressing && out.RequeueAfter == 0 && !running {
		t.Errorf("resumed after an inconclusive run: %s %q with no run running and no requeue: it can never move on its own",
			out.Status.Phase, out.Status.Message)
	}
}

// match_routes_reach_canary (seeds 26, 40, 46, 54, 71, 73, ...): a fault
// limited by match gets a route ahead of all others with the weighted
// destinations, so a request matching both it and a dark / header /
// preview / affinity route is sent by weight instead of to the canary: a
// dark-release user who also matches the fault sees the stable revision,
// and a user pinned by session affinity bounces between revisions.
func TestReproFaultRouteShadowsMatchRoutes(t *testing.T) {
	t.Parallel()
	jason := []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: simStr("jason")}}}}
	r := newRepro(t, v1alpha1.Strategy{DarkRelease: &v1alpha1.DarkReleaseStrategy{Match: jason}})
	r.ro.Spec.Service.Policy = &v1alpha1.RoutePolicy{
		Timeout: simDur(2 * time.Second),
		Fault: &v1alpha1.FaultPolicy{
			Delay: &v1alpha1.FaultDelay{FixedDelay: metav1.Duration{Duration: time.Second}, Percent: 5},
			Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "x-chaos", Exact: simStr("on")}}}},
		},
	}
	r.step(Observations{})
	out := r.push("v2")
	req := propRequest{}
	req.satisfy(plan.Match{Headers: []plan.HeaderMatch{{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}, {Name: "x-chaos", Kind: plan.HeaderExact, Value: "on"}}})
	served := propServe(out.Plan.Hosts[0], req)
	if served == nil || len(served.Destinations) != 1 || served.Destinations[0].Subset != plan.Canary {
		t.Errorf("request %s is served by %s, want the canary (the dark route, with the fault)", req, propJSON(served))
	}
	if served != nil && (served.Policy == nil || served.Policy.Fault == nil) {
		t.Errorf("request %s matches the fault but is served without it by %s", req, propJSON(served))
	}
}

func propDeref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}
