package engine

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestFirstRevisionBecomesStable(t *testing.T) {
	t.Parallel()
	ro := standalone("v1", canary(weight(10)))
	ro.Status = v1alpha1.RolloutStatus{}
	h := newHarness(t, ro)
	h.wantPhase(v1alpha1.PhaseHealthy)
	if h.ro.Status.StableRevision != "v1" || h.ro.Status.CanaryRevision != "" {
		t.Fatalf("stable=%q canary=%q, want v1 and none", h.ro.Status.StableRevision, h.ro.Status.CanaryRevision)
	}
	h.wantAllStable()
	if h.ro.Status.StableBackend == nil || h.ro.Status.StableBackend.Endpoints[0] != "127.0.0.1:9001" {
		t.Fatalf("stable backend not recorded: %+v", h.ro.Status.StableBackend)
	}
}

func TestSameRevisionChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v1", canary(weight(10))))
	before := h.out
	h.advance(time.Hour)
	if h.out.Plan.Version != before.Plan.Version || len(h.out.Actions) != 0 || len(h.out.Events) != 0 {
		t.Fatalf("same revision changed something: plan %s→%s actions %v events %v", before.Plan.Version, h.out.Plan.Version, h.out.Actions, h.out.Events)
	}
	h.wantPhase(v1alpha1.PhaseHealthy)
}

func TestCanaryWalksStepsOnAcknowledgement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(5), pauseFor(time.Minute), weight(50))))
	h.wantStep(0)
	h.wantWeight(5)
	h.wantPhase(v1alpha1.PhaseProgressing)
	if h.ro.Status.StepAcknowledgedAt != nil {
		t.Fatal("step acknowledged before the data plane answered")
	}
	// Time alone does not complete a weight step.
	h.advance(30 * time.Second)
	h.wantStep(0)
	// A stale acknowledgement (another version) is ignored.
	h.step(Observations{DataPlane: DataPlane{Version: "stale", State: AckAcknowledged}})
	h.wantStep(0)
	h.ack()
	h.wantStep(1) // pause, acknowledged at once: plan unchanged
	ackAt := h.ro.Status.StepAcknowledgedAt
	if ackAt == nil || !ackAt.Time.Equal(h.now) {
		t.Fatalf("pause acknowledged at %v, want %v", ackAt, h.now)
	}
	if h.out.RequeueAfter != time.Minute {
		t.Fatalf("requeue after %v, want 1m (the pause)", h.out.RequeueAfter)
	}
	h.advance(59 * time.Second)
	h.wantStep(1)
	h.advance(time.Second)
	h.wantStep(2)
	h.wantWeight(50)
	h.ack()
	h.wantStep(3) // promotion
	h.wantWeight(100)
	h.ack()
	h.wantPhase(v1alpha1.PhaseHealthy)
	if h.ro.Status.StableRevision != "v2" {
		t.Fatalf("stable = %s after promotion, want v2", h.ro.Status.StableRevision)
	}
	if lr := h.ro.Status.LastRollout; lr == nil || lr.Outcome != v1alpha1.OutcomePromoted || lr.Revision != "v2" {
		t.Fatalf("last rollout = %+v", lr)
	}
	h.wantAllStable()
	if got := h.out.Plan.Revision(plan.Stable); got != "v2" {
		t.Fatalf("stable subset selects %q, want v2", got)
	}
	if h.ro.Status.StableBackend.Endpoints[0] != "127.0.0.1:9001" {
		t.Fatalf("stable backend = %+v, want v2's endpoints", h.ro.Status.StableBackend)
	}
}

func TestPauseCountsFromAcknowledgement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(20), pauseFor(time.Minute))))
	h.advance(10 * time.Minute) // the data plane is slow
	h.wantStep(0)
	h.ack()
	h.wantStep(1)
	h.advance(30 * time.Second)
	h.wantStep(1)
	h.advance(30 * time.Second)
	h.wantStep(2)
}

func TestIndefinitePauseWaitsForPromote(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(20), pauseForever(), weight(60))))
	h.ack()
	h.wantStep(1)
	h.wantPhase(v1alpha1.PhasePaused)
	h.advance(24 * time.Hour)
	h.wantStep(1)
	h.command("c1", v1alpha1.CommandPromote)
	h.wantStep(2)
	h.wantWeight(60)
	// The same command delivered again (e.g. after a restart) is ignored.
	h.command("c1", v1alpha1.CommandPromote)
	h.wantStep(2)
	if lc := h.ro.Status.LastCommand; lc == nil || lc.By != "alice" || !strings.Contains(lc.Result, "skipped step 2") {
		t.Fatalf("last command = %+v", lc)
	}
}

func TestAnalysisStep(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		policy    v1alpha1.FailureAction
		phase     v1alpha1.AnalysisPhase
		wantPhase v1alpha1.Phase
		wantStep  int
		wantAbort bool
	}{
		{"success advances", "", v1alpha1.AnalysisSuccessful, v1alpha1.PhaseProgressing, 2, false},
		{"failure aborts", "", v1alpha1.AnalysisFailed, v1alpha1.PhaseDegraded, 1, true},
		{"error aborts", v1alpha1.ActionAbort, v1alpha1.AnalysisError, v1alpha1.PhaseDegraded, 1, true},
		{"failure pauses by policy", v1alpha1.ActionPause, v1alpha1.AnalysisFailed, v1alpha1.PhasePaused, 1, false},
		{"inconclusive pauses", "", v1alpha1.AnalysisInconclusive, v1alpha1.PhasePaused, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := standalone("v2", canary(weight(10), analysis("success-rate"), weight(50)))
			ro.Spec.Rollback.OnAnalysisFailure = tc.policy
			h := newHarness(t, ro)
			if len(h.actions(ActionStartAnalysis)) != 0 {
				t.Fatal("analysis started before its step")
			}
			h.ack()
			h.wantStep(1)
			starts := h.actions(ActionStartAnalysis)
			if len(starts) != 1 {
				t.Fatalf("start actions = %d, want 1", len(starts))
			}
			run := starts[0].Run
			if run.Name != "reviews-v2-1-step2" || run.Kind != v1alpha1.AnalysisStepKind {
				t.Fatalf("run = %+v", run)
			}
			if !slices.ContainsFunc(run.Args, func(a v1alpha1.Argument) bool { return a.Name == "canaryRevision" && a.Value == "v2" }) {
				t.Fatalf("built-in args missing: %+v", run.Args)
			}
			h.analysis(run.Name, v1alpha1.AnalysisRunning, "")
			h.wantStep(1)
			h.analysis(run.Name, tc.phase, "error rate 0.31 > 0.05")
			h.wantPhase(tc.wantPhase)
			h.wantStep(tc.wantStep)
			if (h.ro.Status.Abort != nil) != tc.wantAbort {
				t.Fatalf("abort = %+v, want %v", h.ro.Status.Abort, tc.wantAbort)
			}
			if tc.wantAbort {
				h.wantAllStable()
				if !strings.Contains(h.ro.Status.Message, "error rate 0.31") {
					t.Fatalf("message %q does not carry the analysis reason", h.ro.Status.Message)
				}
			}
		})
	}
}

func TestHeaderRouteAndMirror(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(
		headerRoute("jason", "end-user", "jason"),
		v1alpha1.CanaryStep{SetMirror: &v1alpha1.MirrorStep{Percent: 20}},
		weight(10),
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: "jason"}},
		v1alpha1.CanaryStep{SetMirror: &v1alpha1.MirrorStep{Percent: 0}},
	)))
	if got := h.routeNames(); !slices.Equal(got, []string{"header-jason", "primary"}) {
		t.Fatalf("routes = %v", got)
	}
	r := h.out.Plan.Hosts[0].Routes[0]
	if r.Destinations[0].Subset != plan.Canary || r.Match[0].Headers[0] != (plan.HeaderMatch{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}) {
		t.Fatalf("header route = %+v", r)
	}
	h.wantWeight(0)
	h.ack()
	h.wantStep(1)
	if m := h.out.Plan.Hosts[0].Routes[1].Mirror; m == nil || m.Percent != 20 || m.Subset != plan.Canary {
		t.Fatalf("mirror = %+v", m)
	}
	h.ack()
	h.ack()
	h.wantStep(3)
	if got := h.routeNames(); !slices.Equal(got, []string{"primary"}) {
		t.Fatalf("routes after removal = %v", got)
	}
	h.ack()
	h.wantStep(4)
	if h.out.Plan.Hosts[0].Routes[0].Mirror != nil {
		t.Fatal("mirror not removed")
	}
}

func TestNewerRevisionMidRolloutStartsAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(10), analysis("a"), weight(50))))
	h.ack()
	h.wantStep(1)
	oldRun := h.ro.Status.Analysis[0].Name
	h.setVersion("v3")
	h.step(Observations{})
	if h.ro.Status.CanaryRevision != "v3" || h.ro.Status.StableRevision != "v1" {
		t.Fatalf("canary=%s stable=%s", h.ro.Status.CanaryRevision, h.ro.Status.StableRevision)
	}
	h.wantStep(0)
	if stops := h.actions(ActionStopAnalysis); len(stops) != 1 || stops[0].Run.Name != oldRun {
		t.Fatalf("stop actions = %+v, want the v2 run stopped", stops)
	}
	// v3's subset is added at 0% first, then weighted.
	h.wantWeight(0)
	if got := h.out.Plan.Revision(plan.Canary); got != "v3" {
		t.Fatalf("canary subset = %s", got)
	}
	h.ack()
	h.wantStep(0)
	h.wantWeight(10)
}

func TestFirstStepAddsTheCanaryBeforeRoutingToIt(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(10), weight(20)))
	ro.Spec.ProgressDeadlineSeconds = i32(60)
	h := &harness{t: t, ro: ro, now: t0}
	h.step(Observations{})
	h.wantStep(0)
	h.wantWeight(0)
	if got := h.out.Plan.Revision(plan.Canary); got != "v2" {
		t.Fatalf("warm-up plan has canary subset %q, want v2", got)
	}
	if !strings.Contains(h.ro.Status.Message, "adding the canary at 0% first") {
		t.Fatalf("message = %q", h.ro.Status.Message)
	}
	warm := h.out.Plan.Version
	// Without an acknowledgement the step never routes to the canary, and
	// the progress deadline ends it.
	h.advance(30 * time.Second)
	h.wantWeight(0)
	h.ack()
	h.wantWeight(10)
	if h.out.Plan.Version == warm {
		t.Fatal("weighted plan has the warm-up version")
	}
	h.ack()
	h.wantStep(1)

	// A data plane that never acknowledges the subset: abort at the deadline.
	h2 := &harness{t: t, ro: standalone("v2", canary(weight(10))), now: t0}
	h2.ro.Spec.ProgressDeadlineSeconds = i32(60)
	h2.step(Observations{})
	h2.advance(61 * time.Second)
	h2.wantPhase(v1alpha1.PhaseDegraded)
	if !strings.Contains(h2.ro.Status.Abort.Message, "canary subset") {
		t.Fatalf("abort message = %q", h2.ro.Status.Abort.Message)
	}
}

func TestSpecBackToStableIsImmediate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(40), analysis("a"))))
	h.ack()
	h.setVersion("v1")
	h.step(Observations{})
	h.wantPhase(v1alpha1.PhaseHealthy)
	h.wantAllStable()
	if len(h.actions(ActionStartAnalysis)) != 0 {
		t.Fatal("analysis started on the way back to stable")
	}
	if len(h.actions(ActionStopAnalysis)) != 1 {
		t.Fatalf("running analysis not stopped: %+v", h.out.Actions)
	}
}

func TestBackgroundAnalysisFailureAborts(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(10), weight(20), weight(30)))
	ro.Spec.Analysis = &v1alpha1.BackgroundAnalysis{AnalysisStep: *analysisStep("latency"), StartingStep: i32(1)}
	ro.Spec.Rollback.GitRevert = true
	h := newHarness(t, ro)
	if len(h.actions(ActionStartAnalysis)) != 0 {
		t.Fatal("background analysis started before startingStep")
	}
	h.ack()
	h.wantStep(1)
	starts := h.actions(ActionStartAnalysis)
	if len(starts) != 1 || starts[0].Run.Kind != v1alpha1.AnalysisBackgroundKind {
		t.Fatalf("starts = %+v", starts)
	}
	h.analysis(starts[0].Run.Name, v1alpha1.AnalysisFailed, "p99 1.2s > 500ms")
	h.wantPhase(v1alpha1.PhaseDegraded)
	h.wantAllStable()
	reverts := h.actions(ActionGitRevert)
	if len(reverts) != 1 || reverts[0].Revert.StableRevision != "v1" || reverts[0].Revert.FailedRevision != "v2" {
		t.Fatalf("git revert = %+v", reverts)
	}
	if !strings.Contains(reverts[0].Revert.Message, "p99 1.2s") {
		t.Fatalf("revert message %q lacks the analysis values", reverts[0].Revert.Message)
	}
	// The revert lands: Healthy again, and the abort stays visible.
	h.setVersion("v1")
	h.step(Observations{})
	h.wantPhase(v1alpha1.PhaseHealthy)
	lr := h.ro.Status.LastRollout
	if lr == nil || lr.Outcome != v1alpha1.OutcomeAborted || lr.Revision != "v2" || lr.Reason != v1alpha1.ReasonAnalysisFailed {
		t.Fatalf("last rollout = %+v", lr)
	}
	if !strings.Contains(h.ro.Status.Message, "the rollout of v2 was aborted") {
		t.Fatalf("healthy message %q hides the abort", h.ro.Status.Message)
	}
}

func TestNack(t *testing.T) {
	t.Parallel()
	for _, policy := range []v1alpha1.FailureAction{v1alpha1.ActionAbort, v1alpha1.ActionPause} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			ro := standalone("v2", canary(weight(10)))
			ro.Spec.Rollback.OnNack = policy
			h := newHarness(t, ro)
			h.nack("route_config: invalid regex")
			if !strings.Contains(h.ro.Status.Message, "invalid regex") || h.ro.Status.Traffic.Rejection != "route_config: invalid regex" {
				t.Fatalf("NACK text not in status: %q / %q", h.ro.Status.Message, h.ro.Status.Traffic.Rejection)
			}
			if policy == v1alpha1.ActionAbort {
				h.wantPhase(v1alpha1.PhaseDegraded)
				h.wantAllStable()
			} else {
				h.wantPhase(v1alpha1.PhasePaused)
				h.wantWeight(10)
			}
		})
	}
}

func TestProgressDeadline(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(10)))
	ro.Spec.ProgressDeadlineSeconds = i32(60)
	h := newHarness(t, ro)
	if h.out.RequeueAfter != 61*time.Second {
		t.Fatalf("requeue %v, want the deadline", h.out.RequeueAfter)
	}
	h.advance(60 * time.Second)
	h.wantPhase(v1alpha1.PhaseProgressing)
	h.advance(2 * time.Second)
	h.wantPhase(v1alpha1.PhaseDegraded)
	if h.ro.Status.Abort.Reason != v1alpha1.ReasonDeadline || !h.ro.Status.Abort.Automatic {
		t.Fatalf("abort = %+v", h.ro.Status.Abort)
	}
	h.wantAllStable()
}

func TestCommands(t *testing.T) {
	t.Parallel()
	t.Run("abort then retry restarts from step 1 with fresh runs", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", canary(weight(10), analysis("a"))))
		h.ack()
		run1 := h.ro.Status.Analysis[0].Name
		h.command("1", v1alpha1.CommandAbort)
		h.wantPhase(v1alpha1.PhaseDegraded)
		h.wantAllStable()
		if h.ro.Status.Abort.Automatic {
			t.Fatal("manual abort marked automatic")
		}
		if len(h.actions(ActionGitRevert)) != 0 {
			t.Fatal("manual abort asked for a Git revert")
		}
		h.command("2", v1alpha1.CommandRetry)
		h.wantStep(0)
		h.warmup()
		h.wantWeight(10)
		h.ack()
		h.wantStep(1)
		if run2 := h.ro.Status.Analysis[0].Name; run2 == run1 {
			t.Fatalf("retry reused run %s", run1)
		}
	})
	t.Run("promote full goes to 100%", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", canary(weight(10), pauseForever(), weight(50))))
		h.command("1", v1alpha1.CommandPromoteFull)
		h.wantStep(3)
		h.wantWeight(100)
		h.ack()
		h.wantPhase(v1alpha1.PhaseHealthy)
	})
	t.Run("pause and resume", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", canary(weight(10), weight(20))))
		h.command("1", v1alpha1.CommandPause)
		h.wantPhase(v1alpha1.PhasePaused)
		h.ack()
		h.wantStep(0) // acknowledged but held
		h.command("2", v1alpha1.CommandResume)
		h.wantStep(1)
	})
	t.Run("abort when nothing rolls is refused", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v1", canary(weight(10))))
		h.command("1", v1alpha1.CommandAbort)
		if !strings.HasPrefix(h.ro.Status.LastCommand.Result, "refused") {
			t.Fatalf("result = %q", h.ro.Status.LastCommand.Result)
		}
		h.wantPhase(v1alpha1.PhaseHealthy)
	})
	t.Run("promote while aborted is refused", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", canary(weight(10))))
		h.command("1", v1alpha1.CommandAbort)
		h.command("2", v1alpha1.CommandPromote)
		h.wantPhase(v1alpha1.PhaseDegraded)
		if !strings.Contains(h.ro.Status.LastCommand.Result, "use retry") {
			t.Fatalf("result = %q", h.ro.Status.LastCommand.Result)
		}
	})
}

func TestSpecPaused(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(10), weight(20)))
	ro.Spec.Paused = true
	h := newHarness(t, ro)
	h.wantPhase(v1alpha1.PhasePaused)
	h.wantStep(-1)
	h.ro.Spec.Paused = false
	h.step(Observations{})
	h.wantStep(0)
}

func TestDeploymentWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v1", canary(weight(10), weight(20))))
	h.window = Window{Closed: true, Reason: "deny Fri 22:00 for 60h", NextChange: t0.Add(2 * time.Hour)}
	h.setVersion("v2")
	h.step(Observations{})
	h.wantStep(-1)
	h.wantPhase(v1alpha1.PhasePaused)
	h.wantAllStable()
	if h.out.RequeueAfter != 2*time.Hour {
		t.Fatalf("requeue = %v, want until the window opens", h.out.RequeueAfter)
	}
	h.command("p", v1alpha1.CommandPromote)
	if !strings.Contains(h.ro.Status.LastCommand.Result, "window closed") {
		t.Fatalf("promote in a closed window: %q", h.ro.Status.LastCommand.Result)
	}
	h.window = Window{}
	h.step(Observations{})
	h.wantStep(0)
	h.warmup()
	h.ack()
	h.wantStep(1)
	h.window = Window{Closed: true, Reason: "deny"}
	h.ack()
	h.wantStep(1) // complete but held
	h.wantPhase(v1alpha1.PhasePaused)
	// An abort is never held by a window.
	h.command("a", v1alpha1.CommandAbort)
	h.wantPhase(v1alpha1.PhaseDegraded)
	h.wantAllStable()
}

func TestSessionAffinity(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(20), weight(50)))
	ro.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Cookie: &v1alpha1.CookieAffinity{Name: "canary", MaxAge: dur(time.Hour)}}
	h := newHarness(t, ro)
	want := &plan.Affinity{Cookie: "canary", CookieTTL: time.Hour}
	primary := h.out.Plan.Hosts[0].Routes[0]
	if got := h.routeNames(); !slices.Equal(got, []string{"primary"}) || !reflect.DeepEqual(primary.Affinity, want) {
		t.Fatalf("routes = %v, affinity %+v, want only primary with %+v", got, primary.Affinity, want)
	}
	h.command("a", v1alpha1.CommandAbort)
	if a := h.out.Plan.Hosts[0].Routes[0].Affinity; a != nil {
		t.Fatalf("affinity survives abort: %+v", a)
	}
	h.command("r", v1alpha1.CommandRetry)
	if a := h.out.Plan.Hosts[0].Routes[0].Affinity; !reflect.DeepEqual(a, want) {
		t.Fatalf("affinity after retry = %+v", a)
	}
	h.warmup()
	h.ack()
	h.ack()
	h.ack()
	h.wantPhase(v1alpha1.PhaseHealthy)
	if a := h.out.Plan.Hosts[0].Routes[0].Affinity; a != nil {
		t.Fatalf("affinity survives promotion: %+v", a)
	}
}

func TestFaultPolicyWithMatch(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(30)))
	ro.Spec.Service.Policy = &v1alpha1.RoutePolicy{
		Timeout: dur(2 * time.Second),
		Fault: &v1alpha1.FaultPolicy{
			Abort: &v1alpha1.FaultAbort{GRPCStatus: i32(14), Percent: 100},
			Match: []v1alpha1.RouteMatch{jason("x-fault", "yes")},
		},
	}
	h := newHarness(t, ro)
	routes := h.out.Plan.Hosts[0].Routes
	if len(routes) != 2 || routes[0].Name != "fault" {
		t.Fatalf("routes = %v", h.routeNames())
	}
	if f := routes[0].Policy.Fault; f == nil || f.Abort.GRPCStatus != 14 {
		t.Fatalf("fault route policy = %+v", routes[0].Policy)
	}
	if routes[1].Policy.Fault != nil || routes[1].Policy.Timeout != 2*time.Second {
		t.Fatalf("primary policy = %+v", routes[1].Policy)
	}
	if routes[0].Destinations[1].Weight != 30 {
		t.Fatalf("fault route does not follow the weights: %+v", routes[0].Destinations)
	}
}

func TestPolicyRules(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(30)))
	ro.Spec.Service.Policy = &v1alpha1.RoutePolicy{
		Timeout: dur(2 * time.Second),
		Fault:   &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{FixedDelay: *dur(time.Millisecond), Percent: 1}},
		Rules: []v1alpha1.PolicyRule{
			{Name: "alice", Match: []v1alpha1.RouteMatch{jason("end-user", "alice")},
				Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: i32(500), GRPCStatus: i32(13), Percent: 100}}},
			{Name: "bob", Match: []v1alpha1.RouteMatch{jason("end-user", "bob")}, Timeout: dur(5 * time.Second),
				Retries: &v1alpha1.RetryPolicy{Attempts: 2}},
		},
	}
	ro.Spec.Strategy.Canary.Steps = append([]v1alpha1.CanaryStep{headerRoute("jason", "end-user", "jason")}, ro.Spec.Strategy.Canary.Steps...)
	h := newHarness(t, ro)
	h.ack()
	want := []string{"header-jason-rule-alice", "header-jason-rule-bob", "header-jason", "rule-alice", "rule-bob", "primary"}
	if got := h.routeNames(); !slices.Equal(got, want) {
		t.Fatalf("routes = %v, want %v", got, want)
	}
	routes := h.out.Plan.Hosts[0].Routes
	byName := map[string]plan.Route{}
	for _, r := range routes {
		byName[r.Name] = r
	}
	alice, bob, primary := byName["rule-alice"], byName["rule-bob"], byName["primary"]
	if a := alice.Policy.Fault.Abort; a == nil || a.HTTPStatus != 500 || a.GRPCStatus != 13 || alice.Policy.Timeout != 2*time.Second || alice.Policy.Fault.Delay != nil {
		t.Errorf("alice's policy = %+v, want the abort in place of the service's delay and the service's timeout", alice.Policy)
	}
	if bob.Policy.Timeout != 5*time.Second || bob.Policy.Retries.Attempts != 2 || bob.Policy.Fault.Delay == nil {
		t.Errorf("bob's policy = %+v, want his timeout and retries and the service's delay", bob.Policy)
	}
	if primary.Policy.Timeout != 2*time.Second || primary.Policy.Fault.Delay == nil || primary.Policy.Fault.Abort != nil {
		t.Errorf("primary policy = %+v", primary.Policy)
	}
	if !slices.Equal(alice.Destinations, primary.Destinations) {
		t.Errorf("alice's route does not follow the weights: %+v", alice.Destinations)
	}
	if j := byName["header-jason-rule-alice"]; len(j.Match) != 1 || len(j.Match[0].Headers) != 2 || j.Destinations[0].Subset != plan.Canary {
		t.Errorf("jason ∧ alice route = %+v, want both headers and the canary", j)
	}
}

func TestControllerModeWaitsForCanaryReplicas(t *testing.T) {
	t.Parallel()
	ro := controllerMode(standalone("v2", canary(weight(25), weight(100))), "reviews:v2", 8)
	h := newHarness(t, ro)
	canaryRev := h.ro.Status.CanaryRevision
	if canaryRev == "" || canaryRev == h.ro.Status.StableRevision {
		t.Fatalf("template change did not start a rollout: %+v", h.ro.Status)
	}
	h.wantWeight(0)
	if h.ro.Status.Phase != v1alpha1.PhaseProgressing || !strings.Contains(h.ro.Status.Message, "ready") {
		t.Fatalf("status %s: %s", h.ro.Status.Phase, h.ro.Status.Message)
	}
	want := []Scale{{Revision: canaryRev, Replicas: 2}, {Revision: h.ro.Status.StableRevision, Replicas: 8}}
	slices.SortFunc(want, func(a, b Scale) int { return strings.Compare(a.Revision, b.Revision) })
	if !slices.Equal(h.out.Scale, want) {
		t.Fatalf("scale = %+v, want %+v", h.out.Scale, want)
	}
	// An acknowledgement of the held-back plan does not complete the step.
	h.ack()
	h.wantStep(0)
	h.workload = &Workload{StableAvailable: 8, CanaryAvailable: 2}
	h.step(Observations{})
	h.wantWeight(25)
	h.ack()
	h.wantStep(1)
	h.wantWeight(25) // waiting for 8 canary replicas
	h.workload = &Workload{StableAvailable: 8, CanaryAvailable: 8}
	h.step(Observations{})
	h.wantWeight(100)
	h.ack()
	h.ack()
	h.wantPhase(v1alpha1.PhaseHealthy)
	sd := h.ro.Status.ScaleDown
	if sd == nil || sd.At.Time != h.now.Add(30*time.Second) {
		t.Fatalf("scale-down = %+v", sd)
	}
	if len(h.out.Scale) != 2 {
		t.Fatalf("old revision not kept during the scale-down delay: %+v", h.out.Scale)
	}
	h.advance(30 * time.Second)
	if len(h.out.Scale) != 1 || h.out.Scale[0].Revision != canaryRev {
		t.Fatalf("scale after delay = %+v", h.out.Scale)
	}
}

func blueGreen(auto *int32) v1alpha1.Strategy {
	return v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
		Preview:               v1alpha1.PreviewSpec{Match: []v1alpha1.RouteMatch{jason("x-preview", "true")}, Hosts: []string{"preview.reviews"}},
		PrePromotionAnalysis:  analysisStep("smoke"),
		PostPromotionAnalysis: analysisStep("success-rate"),
		AutoPromotionSeconds:  auto,
	}}
}

func TestBlueGreen(t *testing.T) {
	t.Parallel()
	t.Run("manual promotion and post-promotion failure switches back", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", blueGreen(nil)))
		h.wantWeight(0)
		if got := h.routeNames(); !slices.Equal(got, []string{"preview", "primary"}) {
			t.Fatalf("routes = %v", got)
		}
		if len(h.out.Plan.Hosts) != 2 || h.out.Plan.Hosts[1].Name != "preview.reviews" || h.out.Plan.Hosts[1].Weight(plan.Canary) != 100 {
			t.Fatalf("preview host missing: %+v", h.out.Plan.Hosts)
		}
		h.ack()
		h.wantStep(1)
		pre := h.actions(ActionStartAnalysis)
		if len(pre) != 1 || pre[0].Run.Kind != v1alpha1.AnalysisPrePromotion {
			t.Fatalf("pre-promotion run = %+v", pre)
		}
		h.analysis(pre[0].Run.Name, v1alpha1.AnalysisSuccessful, "")
		h.wantStep(2)
		h.wantPhase(v1alpha1.PhasePaused)
		h.wantWeight(0)
		h.command("p", v1alpha1.CommandPromote)
		h.wantStep(3)
		h.wantWeight(100)
		h.ack()
		h.wantStep(4)
		post := h.actions(ActionStartAnalysis)
		if len(post) != 1 || post[0].Run.Kind != v1alpha1.AnalysisPostPromotion {
			t.Fatalf("post-promotion run = %+v", post)
		}
		h.analysis(post[0].Run.Name, v1alpha1.AnalysisFailed, "5xx 12%")
		h.wantPhase(v1alpha1.PhaseDegraded)
		h.wantAllStable()
		if len(h.out.Plan.Hosts) != 1 {
			t.Fatalf("preview host kept after abort: %+v", h.out.Plan.Hosts)
		}
	})
	t.Run("auto promotion after N seconds", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", blueGreen(i32(300))))
		h.ack()
		h.analysis(h.ro.Status.Analysis[0].Name, v1alpha1.AnalysisSuccessful, "")
		h.wantStep(2)
		h.wantPhase(v1alpha1.PhaseProgressing)
		if h.out.RequeueAfter != 300*time.Second {
			t.Fatalf("requeue = %v", h.out.RequeueAfter)
		}
		h.advance(300 * time.Second)
		h.wantStep(3)
		h.wantWeight(100)
		h.ack()
		h.analysis(h.ro.Status.Analysis[1].Name, v1alpha1.AnalysisSuccessful, "")
		h.wantStep(5)
		h.ack()
		h.wantPhase(v1alpha1.PhaseHealthy)
		if h.ro.Status.StableRevision != "v2" {
			t.Fatalf("stable = %s", h.ro.Status.StableRevision)
		}
	})
	t.Run("scales the new revision fully before preview", func(t *testing.T) {
		t.Parallel()
		ro := controllerMode(standalone("v2", blueGreen(nil)), "reviews:v2", 4)
		h := newHarness(t, ro)
		for _, s := range h.out.Scale {
			if s.Replicas != 4 {
				t.Fatalf("scale = %+v, want 4 each", h.out.Scale)
			}
		}
		if got := h.routeNames(); !slices.Equal(got, []string{"primary"}) {
			t.Fatalf("preview routed before the new revision is ready: %v", got)
		}
	})
}

func TestDarkRelease(t *testing.T) {
	t.Parallel()
	dark := func(steps ...v1alpha1.CanaryStep) v1alpha1.Strategy {
		return v1alpha1.Strategy{DarkRelease: &v1alpha1.DarkReleaseStrategy{
			Match: []v1alpha1.RouteMatch{
				jason("end-user", "jason"),
				{Cookies: []v1alpha1.CookieMatch{{Name: "beta", Value: "on"}}},
			},
			Analysis: analysisStep("dark-errors"),
			Duration: dur(10 * time.Minute),
			Steps:    steps,
		}}
	}
	t.Run("into canary steps", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", dark(weight(30))))
		h.wantWeight(0)
		r := h.out.Plan.Hosts[0].Routes[0]
		if r.Name != "dark" || len(r.Match) != 2 || r.Match[1].Cookies[0].Name != "beta" {
			t.Fatalf("dark route = %+v", r)
		}
		h.ack()
		h.wantStep(1)
		run := h.actions(ActionStartAnalysis)[0].Run
		if run.Kind != v1alpha1.AnalysisDark {
			t.Fatalf("run kind = %s", run.Kind)
		}
		h.advance(time.Minute)
		h.analysis(run.Name, v1alpha1.AnalysisSuccessful, "")
		h.wantStep(1) // the least dark time is not over
		h.advance(9 * time.Minute)
		h.wantStep(2)
		h.wantWeight(30)
		if got := h.routeNames(); !slices.Equal(got, []string{"dark", "primary"}) {
			t.Fatalf("routes = %v (dark users keep the new version while weights ramp)", got)
		}
		h.ack()
		h.ack()
		h.wantPhase(v1alpha1.PhaseHealthy)
	})
	t.Run("straight to 100%", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, standalone("v2", dark()))
		h.ack()
		h.analysis(h.ro.Status.Analysis[0].Name, v1alpha1.AnalysisSuccessful, "")
		h.advance(10 * time.Minute)
		h.wantStep(2)
		h.wantWeight(100)
		h.ack()
		h.wantPhase(v1alpha1.PhaseHealthy)
	})
}

func TestConditionsExplainState(t *testing.T) {
	t.Parallel()
	h := newHarness(t, standalone("v2", canary(weight(10), pauseForever())))
	find := func(typ string) (string, string) {
		for _, c := range h.ro.Status.Conditions {
			if c.Type == typ {
				return string(c.Status), c.Reason
			}
		}
		t.Fatalf("condition %s missing", typ)
		return "", ""
	}
	if s, r := find(v1alpha1.ConditionProgressing); s != "True" || r != v1alpha1.ReasonWaitingForAck {
		t.Fatalf("Progressing = %s/%s", s, r)
	}
	h.ack()
	if s, r := find(v1alpha1.ConditionPaused); s != "True" || r != v1alpha1.ReasonPausedByStep {
		t.Fatalf("Paused = %s/%s", s, r)
	}
	if h.ro.Status.StepDisplay != "2/3" {
		t.Fatalf("step display = %q", h.ro.Status.StepDisplay)
	}
	h.command("a", v1alpha1.CommandAbort)
	if s, r := find(v1alpha1.ConditionAborted); s != "True" || r != v1alpha1.ReasonAbortedByUser {
		t.Fatalf("Aborted = %s/%s", s, r)
	}
	if s, _ := find(v1alpha1.ConditionReady); s != "False" {
		t.Fatalf("Ready = %s while degraded", s)
	}
}

// An aborted canary keeps its pods until the proxies have applied the
// abort (the 100%-stable plan acknowledged), for at most the scale-down
// delay: scaling it to zero at once would fail the requests of every
// proxy still routing by the plan before.
func TestAbortKeepsCanaryPodsUntilAcknowledged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// acked: the data plane acknowledges the abort's plan after 2 s;
		// otherwise it stays silent.
		acked bool
	}{{"acknowledged", true}, {"silent proxies", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, controllerMode(standalone("v2", canary(weight(50), pauseForever())), "reviews:v2", 4))
			canaryRev, stableRev := h.ro.Status.CanaryRevision, h.ro.Status.StableRevision
			h.workload = &Workload{StableAvailable: 4, CanaryAvailable: 2}
			h.step(Observations{})
			h.ack()
			h.wantWeight(50)
			scaleOf := func(rev string) int32 {
				for _, s := range h.out.Scale {
					if s.Revision == rev {
						return s.Replicas
					}
				}
				return 0
			}

			h.command("abort", v1alpha1.CommandAbort)
			h.wantAllStable()
			if got := scaleOf(canaryRev); got != 2 {
				t.Fatalf("right after the abort the canary is scaled to %d, want its 2 pods kept: %+v", got, h.out.Scale)
			}
			if got := scaleOf(stableRev); got != 4 {
				t.Fatalf("stable scaled to %d, want 4", got)
			}
			if d := h.out.RequeueAfter; d <= 0 || d > 30*time.Second {
				t.Fatalf("RequeueAfter %v, want the end of the 30 s hold at the latest", d)
			}
			h.advance(2 * time.Second)
			if got := scaleOf(canaryRev); got != 2 {
				t.Fatalf("2 s after the abort, unacknowledged: canary scaled to %d, want 2", got)
			}
			if tc.acked {
				h.ack()
				if got := scaleOf(canaryRev); got != 0 {
					t.Fatalf("after the abort's plan was acknowledged the canary still runs %d: %+v", got, h.out.Scale)
				}
				return
			}
			h.advance(28 * time.Second)
			if got := scaleOf(canaryRev); got != 0 {
				t.Fatalf("30 s after the abort with no acknowledgement the canary still runs %d", got)
			}
		})
	}
}
