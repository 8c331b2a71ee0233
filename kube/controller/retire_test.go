package controller

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// setRemoved sets or clears the Git applier's removal mark.
func (h *harness) setRemoved(commit string) {
	h.t.Helper()
	h.refresh()
	base := h.ro.DeepCopy()
	if commit == "" {
		delete(h.ro.Annotations, gitsync.AnnotationRemovedFromGit)
	} else {
		if h.ro.Annotations == nil {
			h.ro.Annotations = map[string]string{}
		}
		h.ro.Annotations[gitsync.AnnotationRemovedFromGit] = commit
	}
	if err := h.c.Patch(context.Background(), h.ro, client.MergeFrom(base)); err != nil {
		h.t.Fatal(err)
	}
}

// A Rollout removed from Git in the middle of a canary with its analysis
// running is retired: the run is stopped, the plan goes to 100% stable,
// the canary's ReplicaSet to zero, Ready=True RemovedFromGit with one
// Warning, and the persisted status rebuilds to the published plan. Put
// back in Git, it is managed again.
func TestRemovedFromGitIsRetired(t *testing.T) {
	h := newHarness(t, setWeight(30), analysisStep("success-rate"), setWeight(60))
	h.drive("healthy on v1", healthy)
	v1 := h.ro.Status.StableRevision
	v2 := h.setImage("checkout:v2")
	h.drive("at the analysis step", h.stepIs(1))
	h.wantCanaryWeight(30)
	run := h.stepRun()

	const commit = "4f2a9c1e0b7d4f2a9c1e0b7d4f2a9c1e0b7d4f2a"
	h.setRemoved(commit)
	h.markAvailable()
	h.mustReconcile()

	st := h.ro.Status
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Status != "True" || ready.Reason != engine.ReasonRemovedFromGit || !strings.Contains(ready.Message, commit[:12]) {
		t.Fatalf("Ready %+v: want True, %s, naming the commit", ready, engine.ReasonRemovedFromGit)
	}
	if st.CanaryRevision != "" || st.CurrentStepIndex != nil || st.StableRevision != v1 {
		t.Errorf("status canary %q step %v stable %s: want no rollout, %s stable", st.CanaryRevision, st.CurrentStepIndex, st.StableRevision, v1)
	}
	p := h.plan()
	if p.Version != st.Traffic.PlanVersion || p.Hosts[0].Weight(plan.Stable) != 100 || len(p.Subsets) != 1 {
		t.Fatalf("published plan %+v (status %s): want 100%% stable, persisted", p, st.Traffic.PlanVersion)
	}
	rebuilt, err := engine.PersistedPlan(h.ro)
	if err != nil || rebuilt.Version != p.Version {
		t.Fatalf("PersistedPlan = %v, %v; want the published %s", rebuilt.Version, err, p.Version)
	}
	if err := h.c.Get(context.Background(), client.ObjectKeyFromObject(run), run); err != nil || !run.Spec.Terminate {
		t.Errorf("AnalysisRun %s terminate=%v (%v): want stopped", run.Name, run.Spec.Terminate, err)
	}
	h.wantReplicas(v1, 3)
	h.wantReplicas(v2, 0)
	if n := h.ev.count("Warning " + engine.ReasonRemovedFromGit); n != 1 {
		t.Errorf("%d RemovedFromGit Warnings, want 1: %v", n, h.ev.all())
	}

	// Later reconciles change nothing and report nothing new.
	h.mustReconcile()
	h.mustReconcile()
	if n := h.ev.count("Warning " + engine.ReasonRemovedFromGit); n != 1 {
		t.Errorf("%d RemovedFromGit Warnings after more reconciles, want 1", n)
	}
	if got := h.plan(); got.Version != p.Version {
		t.Errorf("plan moved to %s after retirement", got.Version)
	}

	// Back in Git: the spec still names v2, so the rollout starts again.
	h.setRemoved("")
	h.markAvailable()
	h.mustReconcile()
	if h.ro.Status.CanaryRevision != v2 || engine.Retired(&h.ro.Status) {
		t.Errorf("after the mark is gone: canary %q, retired %v; want %s rolling out again", h.ro.Status.CanaryRevision, engine.Retired(&h.ro.Status), v2)
	}
}
