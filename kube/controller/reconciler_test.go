package controller

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A new template starts a canary: its ReplicaSet appears at one replica,
// labelled and owned; each step waits for replicas and the data plane;
// analysis success leads on; promotion makes it stable and the old
// ReplicaSet goes to zero after the scale-down delay.
func TestCanaryWalksStepsAndPromotes(t *testing.T) {
	h := newHarness(t, setWeight(10), analysisStep("success-rate"), setWeight(50))
	h.drive("healthy on v1", healthy)
	v1 := h.ro.Status.StableRevision
	h.wantReplicas(v1, 3)

	v2 := h.setImage("checkout:v2")
	h.mustReconcile()
	rs := h.replicaSet(v2)
	if *rs.Spec.Replicas != 1 {
		t.Fatalf("canary ReplicaSet starts at %d replicas, want 1 (10%% of 3, rounded up)", *rs.Spec.Replicas)
	}
	for what, labels := range map[string]map[string]string{"ReplicaSet": rs.Labels, "selector": rs.Spec.Selector.MatchLabels, "pods": rs.Spec.Template.Labels} {
		if labels[workload.LabelRevision] != v2 || labels["app"] != "checkout" {
			t.Errorf("%s labels %v: want app=checkout and %s=%s", what, labels, workload.LabelRevision, v2)
		}
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != h.ro.UID || ref.Kind != "Rollout" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("canary ReplicaSet owner %+v: want the Rollout, blocking deletion", ref)
	}
	if h.ro.Status.CanaryRevision != v2 || h.ro.Status.Traffic.CanaryWeight != 0 {
		t.Fatalf("before the canary is ready: canary %q weight %d; want %s at 0", h.ro.Status.CanaryRevision, h.ro.Status.Traffic.CanaryWeight, v2)
	}

	h.drive("at the analysis step", h.stepIs(1))
	h.wantCanaryWeight(10)
	run := h.stepRun()
	if ref := metav1.GetControllerOf(run); ref == nil || ref.UID != h.ro.UID {
		t.Errorf("AnalysisRun %s owner %+v: want the Rollout", run.Name, ref)
	}
	if len(run.Spec.Metrics) != 1 || !hasArg(run, "canaryRevision", v2) {
		t.Errorf("AnalysisRun spec %+v: want the template's metric and canaryRevision=%s", run.Spec, v2)
	}

	h.finishRun(run, v1alpha1.AnalysisSuccessful, "")
	h.drive("routing 50%", func(ro *v1alpha1.Rollout) bool {
		return *ro.Status.CurrentStepIndex == 2 && ro.Status.Traffic.CanaryWeight == 50
	})
	h.wantCanaryWeight(50)
	h.wantReplicas(v2, 2)

	h.drive("promoted", healthy)
	if h.ro.Status.StableRevision != v2 {
		t.Fatalf("stable %s after promotion, want %s", h.ro.Status.StableRevision, v2)
	}
	if p := h.plan(); p.Hosts[0].Weight(plan.Stable) != 100 || p.Subsets[0].Revision != v2 {
		t.Fatalf("plan after promotion %+v: want 100%% stable on %s", p, v2)
	}
	h.wantReplicas(v2, 3)
	h.wantReplicas(v1, 3) // kept for the scale-down delay

	h.now = h.now.Add(2 * time.Second)
	h.mustReconcile()
	h.wantReplicas(v1, 0)
	if _, ok := h.ev.find("Normal ScaledDown"); !ok {
		t.Errorf("no ScaledDown event in %v", h.ev.all())
	}
	ns, name := h.key.Namespace, h.key.Name
	if v := phaseGauge.Phase(ns, name, "Healthy"); v != 1 {
		t.Errorf("sluice_rollout_phase{phase=Healthy} = %v, want 1", v)
	}
	if v := analysisCounter.Value(ns, name, "Step", "Successful"); v != 1 {
		t.Errorf("sluice_rollout_analysis_runs_total{Successful} = %v, want 1", v)
	}
}

func hasArg(run *v1alpha1.AnalysisRun, name, value string) bool {
	for _, a := range run.Spec.Args {
		if a.Name == name {
			return a.Value == value
		}
	}
	return false
}

// A Failed analysis run aborts: 100% stable at once, Degraded with the
// reason, a Warning Event, the canary scaled to zero.
func TestAnalysisFailureAborts(t *testing.T) {
	h := newHarness(t, setWeight(20), analysisStep("success-rate"), setWeight(60))
	h.drive("healthy on v1", healthy)
	v2 := h.setImage("checkout:v2")
	h.drive("at the analysis step", h.stepIs(1))

	kept := *h.replicaSet(v2).Spec.Replicas
	// Proxies stay on the plan before the abort until they acknowledge
	// the 100%-stable one.
	h.plane.setHold(true)
	h.finishRun(h.stepRun(), v1alpha1.AnalysisFailed, "success-rate: 0.95 < 0.99")
	h.mustReconcile()
	st := h.ro.Status
	if st.Phase != v1alpha1.PhaseDegraded || st.Abort == nil || st.Abort.Reason != v1alpha1.ReasonAnalysisFailed {
		t.Fatalf("after a Failed run: phase %s, abort %+v; want Degraded by %s", st.Phase, st.Abort, v1alpha1.ReasonAnalysisFailed)
	}
	if !strings.Contains(st.Abort.Message, "0.95 < 0.99") {
		t.Errorf("abort message %q does not say why", st.Abort.Message)
	}
	for _, r := range h.plan().Hosts[0].Routes {
		for _, d := range r.Destinations {
			if d.Subset != plan.Stable || d.Weight != 100 {
				t.Fatalf("route %s sends %d%% to %s after abort; want 100%% stable", r.Name, d.Weight, d.Subset)
			}
		}
	}
	if ev, ok := h.ev.find("Warning AnalysisFailed"); !ok || !strings.Contains(ev, "0.95 < 0.99") {
		t.Errorf("no Warning AnalysisFailed event with the reason in %v", h.ev.all())
	}
	// The canary keeps its pods while the abort's plan is not
	// acknowledged, for at most scaleDownDelaySeconds (1 s here).
	h.wantReplicas(v2, kept)
	h.mustReconcile()
	h.wantReplicas(v2, kept)
	h.now = h.now.Add(time.Second)
	h.mustReconcile()
	h.wantReplicas(v2, 0)
	h.plane.setHold(false)
	h.mustReconcile()
	h.wantReplicas(v2, 0)
	if c := findCondition(h.ro, ConditionReconciled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Reconciled condition %+v, want True", c)
	}
}

func findCondition(ro *v1alpha1.Rollout, typ string) *metav1.Condition {
	for i := range ro.Status.Conditions {
		if ro.Status.Conditions[i].Type == typ {
			return &ro.Status.Conditions[i]
		}
	}
	return nil
}

// A command annotation is applied once, however often it is read again,
// and recorded in status.lastCommand with an Event.
func TestCommandAppliedOnce(t *testing.T) {
	h := newHarness(t, setWeight(10), pauseUntilPromoted(), pauseUntilPromoted(), setWeight(50))
	h.drive("healthy on v1", healthy)
	h.setImage("checkout:v2")
	h.drive("paused at step 2", h.stepIs(1))

	at := h.now.Add(-time.Minute)
	h.annotate(t, Command{ID: "cmd-1", Kind: v1alpha1.CommandPromote, By: "alice@example.com", At: at})
	h.mustReconcile()
	lc := h.ro.Status.LastCommand
	if lc == nil || lc.ID != "cmd-1" || lc.By != "alice@example.com" || lc.Kind != v1alpha1.CommandPromote || !strings.Contains(lc.Result, "skipped step 2") {
		t.Fatalf("lastCommand %+v: want cmd-1 Promote by alice, step 2 skipped", lc)
	}
	for range 3 {
		h.now = h.now.Add(time.Second)
		h.mustReconcile()
	}
	if i := *h.ro.Status.CurrentStepIndex; i != 2 {
		t.Fatalf("step index %d after re-reading the command, want 2: applied twice", i)
	}
	if got := h.ro.Status.LastCommand; !got.At.Equal(&lc.At) {
		t.Errorf("lastCommand.at moved from %v to %v", lc.At, got.At)
	}
	if n := h.ev.count("Normal CommandPromote alice@example.com ran Promote"); n != 1 {
		t.Errorf("%d CommandPromote events, want 1: %v", n, h.ev.all())
	}

	h.annotateRaw(t, `{"id":"cmd-2","kind":"Promote","typo":true}`)
	h.mustReconcile()
	if _, ok := h.ev.find("Warning InvalidCommand"); !ok || *h.ro.Status.CurrentStepIndex != 2 {
		t.Errorf("invalid command: step %d, events %v; want step 2 and a Warning", *h.ro.Status.CurrentStepIndex, h.ev.all())
	}
}

// annotate sets the command annotation the way the CLI does: a merge patch.
func (h *harness) annotate(t *testing.T, c Command) {
	t.Helper()
	p, err := CommandPatch(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.c.Patch(context.Background(), h.ro, client.RawPatch(types.MergePatchType, p)); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) annotateRaw(t *testing.T, v string) {
	t.Helper()
	h.refresh()
	base := h.ro.DeepCopy()
	h.ro.Annotations[CommandAnnotation] = v
	if err := h.c.Patch(context.Background(), h.ro, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

// Someone changes the Rollout between the read and the status write: the
// write is refused (409), nothing is acted on, and the next reconcile
// starts over from a fresh read and succeeds.
func TestStatusWriteConflictIsRetried(t *testing.T) {
	h := newHarness(t, setWeight(10))
	h.drive("healthy on v1", healthy)
	var armed atomic.Bool
	h.r.Client = interceptor.NewClient(h.c, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "status" && armed.CompareAndSwap(true, false) {
				// A concurrent writer: the CLI annotating, say.
				bump := &v1alpha1.Rollout{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), bump); err != nil {
					return err
				}
				bump.Annotations = map[string]string{"example.com/touched": "yes"}
				if err := c.Update(ctx, bump); err != nil {
					return err
				}
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
	before, _ := h.plane.last(h.ro)
	v2 := h.setImage("checkout:v2")
	armed.Store(true)

	if _, err := h.reconcile(); !apierrors.IsConflict(err) {
		t.Fatalf("reconcile with a concurrent write: err %v, want a conflict", err)
	}
	if h.ro.Status.CanaryRevision != "" {
		t.Fatalf("status written despite the conflict: canary %s", h.ro.Status.CanaryRevision)
	}
	if p, _ := h.plane.last(h.ro); p.Version != before.Version {
		t.Fatalf("plan %s published after a failed status write", p.Version)
	}
	rs := &appsv1.ReplicaSet{}
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.key.Namespace, Name: workload.Name(h.key.Name, v2)}, rs); !apierrors.IsNotFound(err) {
		t.Fatalf("canary ReplicaSet after a failed status write: %v; want none", err)
	}

	h.mustReconcile()
	if h.ro.Status.CanaryRevision != v2 {
		t.Fatalf("retry: canary %q, want %s", h.ro.Status.CanaryRevision, v2)
	}
	h.wantReplicas(v2, 1)
}
