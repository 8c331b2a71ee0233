package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// replicasRollout is a controller-mode Rollout with the replicas router
// (no router): stable reviews:v1 serves, the spec asks for reviews:v2.
func replicasRollout(replicas int32, steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
	ro := controllerMode(standalone("v2", canary(steps...)), "reviews:v2", replicas)
	ro.Spec.Service.Routers = []v1alpha1.Router{{Replicas: &v1alpha1.ReplicasRouter{}}}
	ro.Spec.ScaleDownDelaySeconds = i32(30)
	return ro
}

// replicasHarness steps ro once with stable and canary pods available.
func replicasHarness(t *testing.T, ro *v1alpha1.Rollout, stable, canary int32) *harness {
	t.Helper()
	h := &harness{t: t, ro: ro, now: t0}
	h.pods(stable, canary)
	h.step(Observations{})
	return h
}

// pods sets the available pods the next steps observe.
func (h *harness) pods(stable, canary int32) {
	h.workload = &Workload{StableAvailable: stable, CanaryAvailable: canary}
}

// wantPods checks the scale of the stable and canary revisions (and of
// old, the previous stable, when given), and nothing else.
func (h *harness) wantPods(stable, canary int32, old ...string) {
	h.t.Helper()
	got := map[string]int32{}
	for _, s := range h.out.Scale {
		got[s.Revision] = s.Replicas
	}
	st := h.ro.Status
	if got[st.StableRevision] != stable || (st.CanaryRevision != "" && got[st.CanaryRevision] != canary) {
		h.t.Fatalf("scale %v: want stable %d, canary %d", h.out.Scale, stable, canary)
	}
	if st.CanaryRevision == "" && canary != 0 {
		h.t.Fatalf("no canary, want %d canary pods", canary)
	}
	want := 1
	if st.CanaryRevision != "" && canary > 0 {
		want++
	}
	want += len(old)
	if len(h.out.Scale) != want {
		h.t.Fatalf("scale %v: want %d revisions", h.out.Scale, want)
	}
}

// wantSplit checks status.traffic.replicas and the plan's canary weight.
func (h *harness) wantSplit(weight, achieved, canary, stable int32) {
	h.t.Helper()
	tr := h.ro.Status.Traffic
	want := v1alpha1.ReplicaSplitStatus{Weight: weight, AchievedWeight: achieved, Canary: canary, Stable: stable}
	if tr.Replicas == nil || *tr.Replicas != want {
		h.t.Fatalf("status.traffic.replicas = %+v, want %+v", tr.Replicas, want)
	}
	if tr.CanaryWeight != achieved {
		h.t.Fatalf("status.traffic.canaryWeight = %d, want the achieved %d", tr.CanaryWeight, achieved)
	}
	h.wantWeight(achieved)
	// No data plane to wait for: every plan is in force once published.
	if tr.AcknowledgedVersion != tr.PlanVersion {
		h.t.Fatalf("plan %s not recorded as acknowledged (%q)", tr.PlanVersion, tr.AcknowledgedVersion)
	}
}

func (h *harness) wantMessage(part string) {
	h.t.Helper()
	if !strings.Contains(h.ro.Status.Message, part) {
		h.t.Fatalf("message %q does not say %q", h.ro.Status.Message, part)
	}
}

// A canary with no router: the canary's share of ten pods follows the
// steps, the canary is scaled up before stable down, a step is
// acknowledged by its pods being available (no data-plane answer is ever
// given here), and promotion keeps the old pods for the scale-down delay.
func TestReplicasRouterCanary(t *testing.T) {
	t.Parallel()
	h := replicasHarness(t, replicasRollout(10, weight(10), pauseFor(time.Minute), weight(50), pauseForever()), 10, 0)
	h.wantStep(0)
	h.wantPods(10, 1) // canary first, stable untouched
	h.wantSplit(0, 0, 0, 10)
	h.wantMessage("waiting for the canary's pods (0 of 1 available) before moving to setWeight 10 → 1 of 10 pods (10%); in force: setWeight 0 → 0 of 10 pods (0%)")
	if h.ro.Status.StepAcknowledgedAt != nil {
		t.Fatal("step acknowledged before the canary's pod is available")
	}

	h.pods(10, 1)
	h.step(Observations{})
	h.wantStep(1) // setWeight 10 acknowledged by its pods; the pause runs
	h.wantPods(9, 1)
	h.wantSplit(10, 10, 1, 9)
	h.wantMessage("1m0s left; in force: setWeight 10 → 1 of 10 pods (10%)")

	h.pods(9, 1)
	h.advance(time.Minute)
	h.wantStep(2)
	h.wantPods(9, 5) // the canary grows first
	h.wantSplit(10, 10, 1, 9)

	// A NACK from an xDS client means nothing to the replicas router.
	h.nack("route reviews: unknown cluster")
	h.wantPhase(v1alpha1.PhaseProgressing)

	h.pods(9, 5)
	h.step(Observations{})
	h.wantStep(3)
	h.wantPhase(v1alpha1.PhasePaused)
	h.wantPods(5, 5)
	h.wantSplit(50, 50, 5, 5)

	h.pods(5, 5)
	h.command("p", v1alpha1.CommandPromote)
	h.wantStep(4)
	h.wantPods(5, 10) // full scale first; stable keeps its pods
	h.wantSplit(50, 50, 5, 5)

	old, rev := h.ro.Status.StableRevision, h.ro.Status.CanaryRevision
	h.pods(5, 10)
	h.step(Observations{})
	h.wantPhase(v1alpha1.PhaseHealthy)
	if h.ro.Status.StableRevision != rev {
		t.Fatalf("stable %s, want the promoted %s", h.ro.Status.StableRevision, rev)
	}
	sd := h.ro.Status.ScaleDown
	if sd == nil || sd.Revision != old || sd.Replicas == nil || *sd.Replicas != 5 {
		t.Fatalf("scaleDown %+v: want %s kept at the 5 pods it had", sd, old)
	}
	h.wantPods(10, 0, old)
	h.wantSplit(0, 0, 0, 10)

	h.advance(31 * time.Second)
	h.wantPods(10, 0)
}

// Abort: the canary goes to zero and stable back to full scale at once.
func TestReplicasRouterAbort(t *testing.T) {
	t.Parallel()
	h := replicasHarness(t, replicasRollout(10, weight(50), pauseForever()), 10, 5)
	h.wantStep(1)
	h.wantPods(5, 5)

	h.pods(5, 5)
	h.command("a", v1alpha1.CommandAbort)
	h.wantPhase(v1alpha1.PhaseDegraded)
	h.wantAllStable()
	h.wantPods(10, 0)
	h.wantSplit(0, 0, 0, 10)

	h.pods(10, 0)
	h.command("r", v1alpha1.CommandRetry)
	h.wantStep(0)
	h.wantPods(10, 5) // from stable only again: canary first
}

// Lowering the weight scales stable up first; the canary shrinks once
// stable's pods are available.
func TestReplicasRouterLowersWithStableFirst(t *testing.T) {
	t.Parallel()
	h := replicasHarness(t, replicasRollout(10, weight(50), pauseFor(time.Minute), weight(10), pauseForever()), 10, 5)
	h.wantStep(1)
	h.wantPods(5, 5)
	h.pods(5, 5)
	h.advance(time.Minute) // setWeight 10 waits for stable's pods
	h.wantStep(2)
	h.wantPods(9, 5)
	h.wantSplit(50, 50, 5, 5)
	h.wantMessage("waiting for stable's pods (5 of 9 available) before moving to setWeight 10 → 1 of 10 pods (10%)")

	h.pods(9, 5)
	h.step(Observations{})
	h.wantStep(3)
	h.wantPods(9, 1)
	h.wantSplit(10, 10, 1, 9)
}

// A closed window holds the split in force exactly: no canary pod is
// added ahead of a step that cannot run, since every pod takes requests.
func TestReplicasRouterWindowHoldsPods(t *testing.T) {
	t.Parallel()
	h := replicasHarness(t, replicasRollout(10, weight(10), pauseFor(time.Minute), weight(50), pauseForever()), 10, 1)
	h.wantStep(1)
	h.advance(time.Minute) // setWeight 50 entered: canary scaling to 5
	h.wantPods(9, 5)
	h.window = Window{Closed: true, Reason: "deny"}
	h.step(Observations{})
	h.wantPhase(v1alpha1.PhasePaused)
	h.wantPods(9, 1)
	h.wantSplit(10, 10, 1, 9)
}

// With four replicas 10% is one pod of four: the plan and status say 25%,
// and the step says so.
func TestReplicasRouterRounds(t *testing.T) {
	t.Parallel()
	h := replicasHarness(t, replicasRollout(4, weight(10), pauseForever()), 4, 1)
	h.wantStep(1)
	h.wantPods(3, 1)
	h.wantSplit(10, 25, 1, 3)
	h.wantMessage("setWeight 10 → 1 of 4 pods (25%)")
}

// Pods that never become available abort the step at the progress
// deadline, saying which.
func TestReplicasRouterDeadline(t *testing.T) {
	t.Parallel()
	h := replicasHarness(t, replicasRollout(10, weight(20), pauseForever()), 10, 1)
	h.wantStep(0)
	h.advance(601 * time.Second)
	h.wantPhase(v1alpha1.PhaseDegraded)
	if a := h.ro.Status.Abort; a == nil || a.Reason != v1alpha1.ReasonDeadline ||
		!strings.Contains(a.Message, "step 1 (setWeight 20) not ready (waiting for the canary's pods (1 of 2 available) before moving to setWeight 20 → 2 of 10 pods (20%)) within 10m0s") {
		t.Fatalf("abort %+v", a)
	}
	h.wantPods(10, 0)
}

// Other routers keep the steps' weight in the plan and record no split.
func TestReplicasSplitOnlyWithReplicasRouter(t *testing.T) {
	t.Parallel()
	ro := replicasRollout(4, weight(10), pauseForever())
	ro.Spec.Service.Routers = nil
	h := replicasHarness(t, ro, 4, 1)
	h.ack()
	h.ack()
	h.wantStep(1)
	h.wantWeight(10)
	if h.ro.Status.Traffic.Replicas != nil {
		t.Fatalf("status.traffic.replicas = %+v with the Istio router", h.ro.Status.Traffic.Replicas)
	}
	h.wantPods(4, 1)
}
