package engine

// The reproductions of issue 12 ("the engine keeps every promise
// docs/engine.md makes"), one named case each. Every case is a short
// history that broke a promise before routedSteps, the subset status, the
// recent command IDs and microsecond acknowledgement times existed; each
// asserts the promise it broke. The property named in each comment is the
// one that now checks the promise over random histories.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// controller turns a repro into controller mode: replicas of a pod
// template, version v1 stable.
func (r *repro) controller(replicas int32) *repro {
	r.ro.Spec.Backend = nil
	r.ro.Spec.Replicas = simI32(replicas)
	r.ro.Spec.Template = simBookinfoTemplate("v1")
	return r
}

// pushTemplate pushes a new pod template without stepping.
func (r *repro) pushTemplate(version string) {
	r.ro.Spec.Template = simBookinfoTemplate(version)
	r.ro.Generation++
}

// pushBackend pushes a new standalone backend without stepping.
func (r *repro) pushBackend(version string) {
	r.ro.Spec.Backend = simBackend(version, "10.0.0.2")
	r.ro.Generation++
}

func (r *repro) with(o Observations, w *Workload) Observations {
	o.Workload = w
	return o
}

func available(canary, replicas int32) *Workload {
	return &Workload{StableAvailable: replicas, CanaryAvailable: canary}
}

func (r *repro) canaryWeight() int32 {
	return r.last.Plan.Hosts[0].Weight(plan.Canary)
}

func (r *repro) wantWeight(when string, w int32) {
	r.t.Helper()
	if got := r.canaryWeight(); got != w {
		r.t.Fatalf("%s: canary weight %d%%, want %d%% (status %s %q, events %s)", when, got, w, r.last.Status.Phase, r.last.Status.Message, propJSON(r.last.Events))
	}
}

// reasonOf is the reason of the phase, as the Ready condition carries it.
func reasonOf(st *v1alpha1.RolloutStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// throughJSON is st as a restarted process reads it back.
func throughJSON(t *testing.T, st v1alpha1.RolloutStatus) v1alpha1.RolloutStatus {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out v1alpha1.RolloutStatus
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r *repro) later(d time.Duration) *repro {
	r.now = r.now.Add(d)
	return r
}

func TestInvariantReproductions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{
			// canary_carried: promote --full at a 25% step with 1 of 3
			// canary replicas available published the traffic of a later
			// step (here 50%, which takes 2), or 100%.
			name: "1a_promote_full_holds_at_what_replicas_carry",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
					simWeight(25), simPause(time.Hour), simWeight(50), simPause(time.Hour),
				}}}).controller(3)
				one, all := available(1, 3), available(3, 3)
				r.step(Observations{Workload: all})
				r.pushTemplate("v2")
				r.step(Observations{Workload: one}) // warm-up plan
				r.step(r.with(r.ack(), one))        // 25%: one replica carries it
				r.step(r.with(r.ack(), one))        // acknowledged: the pause
				r.wantWeight("at the 25% step", 25)
				r.step(r.with(r.cmd("full", v1alpha1.CommandPromoteFull), one))
				r.wantWeight("promote --full with 1 of 3 available", 25)
				if reasonOf(&r.last.Status) != v1alpha1.ReasonWaitingForReady {
					t.Errorf("status %q (%s), want %s", r.last.Status.Message, reasonOf(&r.last.Status), v1alpha1.ReasonWaitingForReady)
				}
				r.step(r.with(r.ack(), one))
				r.wantWeight("an ACK with 1 of 3 available", 25)
				r.step(Observations{Workload: all})
				r.wantWeight("3 of 3 available", 100)
			},
		},
		{
			// canary_carried: promote at a 75% step held at 25% published 75%.
			name: "1b_promote_goes_through_the_readiness_gate",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(25), simWeight(75), simPause(time.Hour)}}}).controller(3)
				one := available(1, 3)
				r.step(Observations{Workload: available(3, 3)})
				r.pushTemplate("v2")
				r.step(Observations{Workload: one})
				r.step(r.with(r.ack(), one)) // 25%
				r.step(r.with(r.ack(), one)) // step 2 wants 75%: held
				r.wantWeight("75% step with 1 of 3 available", 25)
				r.step(r.with(r.cmd("p", v1alpha1.CommandPromote), one))
				r.wantWeight("promote with 1 of 3 available", 25)
			},
		},
		{
			// canary_carried: [25, pause, 75], promote --full at 1 of 3
			// published the 75% of the last step.
			name: "1c_promote_full_never_falls_back_to_a_later_step",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(25), simPause(0), simWeight(75)}}}).controller(3)
				one := available(1, 3)
				r.step(Observations{Workload: available(3, 3)})
				r.pushTemplate("v2")
				r.step(Observations{Workload: one})
				r.step(r.with(r.ack(), one))
				r.step(r.with(r.ack(), one))
				r.step(r.with(r.cmd("full", v1alpha1.CommandPromoteFull), one))
				r.wantWeight("promote --full with 1 of 3 available", 25)
			},
		},
		{
			// subset_known_first: push and promote --full in one Step sent
			// 100% to a subset no proxy knew.
			name: "2a_promote_full_with_the_push_adds_the_subset_first",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), simPause(time.Hour)}}})
				r.step(Observations{})
				r.pushBackend("v2")
				r.step(r.cmd("full", v1alpha1.CommandPromoteFull))
				if r.last.Plan.Revision(plan.Canary) != "v2" {
					t.Fatalf("plan %s has no v2 subset", propJSON(r.last.Plan.Subsets))
				}
				r.wantWeight("the first plan with the v2 subset", 0)
				r.step(r.ack())
				r.wantWeight("after the 0% plan's ACK", 100)
			},
		},
		{
			// subset_known_first: promote while step 1 waits for the 0%
			// plan's ACK published 20%.
			name: "2b_promote_during_warm_up_waits_for_its_ACK",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), simPause(time.Hour)}}})
				r.step(Observations{})
				r.pushBackend("v2")
				r.step(Observations{})
				if !strings.Contains(r.last.Status.Message, warmupMessage) {
					t.Fatalf("status %q, want the warm-up", r.last.Status.Message)
				}
				r.step(r.cmd("p", v1alpha1.CommandPromote))
				r.wantWeight("promote before the warm-up ACK", 0)
				r.step(r.ack())
				r.wantWeight("after the warm-up ACK", 20)
			},
		},
		{
			// weights_follow_steps: [65, 10, pause], the ACK of 10% with
			// readiness unknown went back to 65% while the canary had one
			// replica.
			name: "3_a_step_that_lowers_the_weight_never_raises_it",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(65), simWeight(10), simPause(0)}}}).controller(4)
				all := available(4, 4)
				r.step(Observations{Workload: all})
				r.pushTemplate("v2")
				r.step(Observations{Workload: all})
				r.step(r.with(r.ack(), all)) // 65%
				r.step(r.with(r.ack(), all)) // 10%
				r.wantWeight("the 10% step", 10)
				r.step(r.ack()) // readiness unknown
				r.wantWeight("the ACK of 10% with readiness unknown", 10)
				for _, s := range r.last.Scale {
					if s.Revision == r.last.Status.CanaryRevision && s.Replicas != 1 {
						t.Errorf("canary scaled to %d, want 1 for 10%% of 4", s.Replicas)
					}
				}
			},
		},
		{
			// command_once: pause(p1), resume(r1), pause(p1) paused again;
			// a command without an ID re-opened older IDs too.
			name: "4_a_command_ID_is_applied_at_most_once",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), simPause(time.Hour)}}})
				r.step(Observations{})
				r.push("v2")
				r.step(r.ack())
				r.step(r.cmd("p1", v1alpha1.CommandPause))
				r.step(r.cmd("r1", v1alpha1.CommandResume))
				r.step(r.cmd("", v1alpha1.CommandResume))
				out := r.step(r.cmd("p1", v1alpha1.CommandPause))
				if out.Status.Pause != nil || len(out.Events) > 0 {
					t.Errorf("redelivered pause p1: pause %v, events %s; want it skipped", propJSON(out.Status.Pause), propJSON(out.Events))
				}
			},
		},
		{
			// clock_starts_at_ack: a 1 s pause lasted 0.909 s once the
			// status went through JSON (whole seconds).
			name: "5_a_pause_is_timed_from_the_exact_acknowledgement",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), simPause(time.Second), simWeight(50)}}})
				r.step(Observations{})
				r.push("v2")
				r.later(900 * time.Millisecond).step(r.ack()) // 20% acknowledged at .9 s
				r.later(50 * time.Millisecond).step(Observations{})
				ackAt := r.ro.Status.StepAcknowledgedAt
				r.ro.Status = throughJSON(t, r.ro.Status)
				if !r.ro.Status.StepAcknowledgedAt.Equal(ackAt) {
					t.Fatalf("stepAcknowledgedAt %v after JSON, %v before", r.ro.Status.StepAcknowledgedAt, ackAt)
				}
				r.later(900 * time.Millisecond).step(Observations{}) // 0.95 s after the ACK
				if i := r.last.Status.CurrentStepIndex; i == nil || *i != 1 {
					t.Fatalf("0.95 s into a 1 s pause: at step %v, want still the pause (index 1)", propDeref(i))
				}
				r.later(50 * time.Millisecond).step(Observations{})
				if i := r.last.Status.CurrentStepIndex; i == nil || *i != 2 {
					t.Fatalf("1 s into a 1 s pause: at step %v, want the next step (index 2)", propDeref(i))
				}
			},
		},
		{
			// rejected_not_healthy: a stable plan the router rejected read
			// Healthy with Ready=True.
			name: "6_a_rejected_plan_does_not_read_healthy",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{}})
				r.step(Observations{})
				msg := "DestinationRule default/app exists and was not created by Sluice"
				out := r.step(Observations{DataPlane: DataPlane{Version: r.ro.Status.Traffic.PlanVersion, State: AckRejected, Message: msg}})
				if out.Status.Phase == v1alpha1.PhaseHealthy || reasonOf(&out.Status) != v1alpha1.ReasonNack || !strings.Contains(out.Status.Message, msg) {
					t.Errorf("rejected: phase %s (%s) %q; want not Healthy, reason %s, the rejection in words", out.Status.Phase, reasonOf(&out.Status), out.Status.Message, v1alpha1.ReasonNack)
				}
				if c := meta.FindStatusCondition(out.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != "False" {
					t.Errorf("rejected: Ready %v, want False", propJSON(c))
				}
				out = r.step(r.ack())
				if out.Status.Phase != v1alpha1.PhaseHealthy || out.Status.Traffic.Rejection != "" {
					t.Errorf("acknowledged after the fix: phase %s, rejection %q; want Healthy and no rejection", out.Status.Phase, out.Status.Traffic.Rejection)
				}
			},
		},
		{
			// freeze_holds: a step held for readiness published 50% while
			// the window was closed, once the replicas were ready.
			name: "7_a_closed_window_never_raises_traffic",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(50)}}}).controller(2)
				closed := Window{Closed: true, Reason: `deny "0 0 * * *" for 2h`}
				r.step(Observations{Workload: available(2, 2)})
				r.pushTemplate("v2")
				r.step(Observations{Workload: available(0, 2)})
				r.step(r.with(r.ack(), available(0, 2)))
				r.wantWeight("50% step with no canary replica", 0)
				r.step(Observations{Workload: available(2, 2), Window: closed})
				r.wantWeight("replicas ready while the window is closed", 0)
				if reasonOf(&r.last.Status) != v1alpha1.ReasonWindowClosed {
					t.Errorf("status %s %q, want %s", reasonOf(&r.last.Status), r.last.Status.Message, v1alpha1.ReasonWindowClosed)
				}
				r.later(3 * time.Hour).step(Observations{Workload: available(2, 2)})
				r.wantWeight("the window open again", 50)
				if r.last.Status.Abort != nil {
					t.Errorf("aborted after the freeze: %s", r.last.Status.Abort.Message)
				}
				out := r.step(Observations{Window: closed, Commands: []Command{{ID: "a", Kind: v1alpha1.CommandAbort}}})
				if out.Status.Abort == nil || out.Plan.Hosts[0].Weight(plan.Stable) != 100 {
					t.Errorf("abort in a closed window: abort %v, stable weight %d", out.Status.Abort, out.Plan.Hosts[0].Weight(plan.Stable))
				}
			},
		},
		{
			// nack_attributed: v2 pushed while the window was closed; a
			// NACK of the stable-only plan aborted v2 and asked for a revert.
			name: "8_a_NACK_of_the_stable_plan_does_not_blame_the_canary",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20)}}})
				r.ro.Spec.Rollback.GitRevert = true
				closed := Window{Closed: true, Reason: `deny "0 0 * * *" for 2h`}
				r.step(Observations{})
				r.pushBackend("v2")
				r.step(Observations{Window: closed})
				if r.last.Plan.Revision(plan.Canary) != "" {
					t.Fatalf("window closed: plan has a canary subset")
				}
				out := r.step(Observations{Window: closed, DataPlane: DataPlane{Version: r.ro.Status.Traffic.PlanVersion, State: AckRejected, Message: "route app: bad policy"}})
				if out.Status.Abort != nil || len(out.Actions) > 0 {
					t.Fatalf("NACK of the stable-only plan: abort %v, actions %s; want v2 not blamed", propJSON(out.Status.Abort), propJSON(out.Actions))
				}
				if out.Status.Phase != v1alpha1.PhaseDegraded || reasonOf(&out.Status) != v1alpha1.ReasonNack {
					t.Errorf("phase %s (%s), want Degraded (%s): the plan in force is rejected", out.Status.Phase, reasonOf(&out.Status), v1alpha1.ReasonNack)
				}
				out = r.later(3 * time.Hour).step(Observations{})
				if out.Plan.Revision(plan.Canary) != "v2" || out.Status.Phase != v1alpha1.PhaseProgressing {
					t.Errorf("window open: phase %s %q, canary subset %q; want v2's rollout to go on", out.Status.Phase, out.Status.Message, out.Plan.Revision(plan.Canary))
				}
			},
		},
		{
			// progress_has_a_way_forward (20,000 seeds: 3784, 5368, ...):
			// an Inconclusive run paused the rollout, a NACK under
			// onNack: Pause replaced the pause's reason, and resume then
			// kept the Inconclusive run, which held the step forever.
			name: "9_resume_measures_again_after_a_NACK_over_an_inconclusive_run",
			run: func(t *testing.T) {
				r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20), {Analysis: simAnalysis("error-rate")}, simWeight(50)}}})
				r.ro.Spec.Rollback.OnNack = v1alpha1.ActionPause
				r.step(Observations{})
				r.push("v2")
				name := r.step(r.ack()).Status.Analysis[0].Name
				r.step(r.run(name, v1alpha1.AnalysisInconclusive))
				r.step(Observations{DataPlane: DataPlane{Version: r.ro.Status.Traffic.PlanVersion, State: AckRejected, Message: "bad route"}})
				if p := r.last.Status.Pause; p == nil || p.Reason != v1alpha1.ReasonNack {
					t.Fatalf("setup: pause %v, want one for the NACK", propJSON(p))
				}
				out := r.step(r.with(r.cmd("r", v1alpha1.CommandResume), nil))
				if len(r.startedRuns(out)) != 1 || !strings.Contains(out.Status.LastCommand.Result, "measuring again") {
					t.Errorf("resume: %q, runs started %v; want the step measured again", out.Status.LastCommand.Result, r.startedRuns(out))
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// A NACK's text is the proxy's: it reaches status, Events and screens
// bounded and with its control characters escaped (issue 13: a forged
// NACK carried markup and terminal escapes).
func TestNackTextIsBoundedAndEscaped(t *testing.T) {
	t.Parallel()
	r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{simWeight(20)}}})
	r.step(Observations{})
	r.push("v2")
	text := "\x1b[2J\x1b[31mrogue NACK\nSluice: promoted <script>" + strings.Repeat("x", 10_000)
	out := r.step(Observations{DataPlane: DataPlane{Version: r.ro.Status.Traffic.PlanVersion, State: AckRejected, Message: text}})
	for what, got := range map[string]string{"rejection": out.Status.Traffic.Rejection, "abort": out.Status.Abort.Message, "event": out.Events[0].Message} {
		if len(got) > 1200 || strings.ContainsAny(got, "\x1b\n") || !strings.Contains(got, `\x1b[2J`) || !strings.Contains(got, "…") {
			t.Errorf("%s: %d bytes %q; want at most ~1 KiB, escapes written out, cut with …", what, len(got), got[:min(len(got), 120)])
		}
	}
}
