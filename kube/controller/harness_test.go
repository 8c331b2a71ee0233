package controller

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// harness drives the reconciler by hand against the real API server, with
// a clock of its own: each reconcile is one call, so tests read like the
// rollout's timeline. It plays the kube-controller-manager only where it
// must (marking replicas available) and the analysis controller (writing
// run status).
type harness struct {
	t     *testing.T
	c     client.WithWatch
	r     *Reconciler
	plane *fakePlane
	ev    *events
	now   time.Time
	key   types.NamespacedName
	ro    *v1alpha1.Rollout
}

func newHarness(t *testing.T, steps ...v1alpha1.CanaryStep) *harness {
	t.Helper()
	return harnessOf(t, func(ns string) *v1alpha1.Rollout { return newRollout(ns, "checkout", "checkout:v1", steps...) })
}

// harnessOf is a harness of the Rollout that build makes for a namespace
// of the test's own.
func harnessOf(t *testing.T, build func(ns string) *v1alpha1.Rollout) *harness {
	t.Helper()
	c := cluster(t)
	ns := newNamespace(t, c)
	ctx := context.Background()
	if err := c.Create(ctx, newTemplate(ns, "success-rate")); err != nil {
		t.Fatal(err)
	}
	ro := build(ns)
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, plane: newFakePlane(), ev: &events{},
		now: time.Now().UTC().Truncate(time.Second), key: client.ObjectKeyFromObject(ro)}
	h.r = h.reconciler(c)
	return h
}

// reconciler is a fresh Reconciler, as after a controller restart.
func (h *harness) reconciler(c client.Client) *Reconciler {
	return &Reconciler{Client: c, Recorder: h.ev, Publisher: h.plane, Acknowledger: h.plane,
		Now: func() time.Time { return h.now }}
}

func (h *harness) reconcile() (ctrl.Result, error) {
	h.t.Helper()
	res, err := h.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: h.key})
	h.refresh()
	return res, err
}

func (h *harness) mustReconcile() {
	h.t.Helper()
	if _, err := h.reconcile(); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
}

func (h *harness) refresh() {
	h.t.Helper()
	ro := &v1alpha1.Rollout{}
	if err := h.c.Get(context.Background(), h.key, ro); err != nil {
		h.t.Fatal(err)
	}
	h.ro = ro
}

// drive reconciles, marking replicas available before each pass, until
// done holds; it fails after max passes.
func (h *harness) drive(what string, done func(*v1alpha1.Rollout) bool) {
	h.t.Helper()
	for range 20 {
		h.markAvailable()
		h.mustReconcile()
		if done(h.ro) {
			return
		}
	}
	h.t.Fatalf("not %s after 20 reconciles: phase %s, step %s: %s", what, h.ro.Status.Phase, h.ro.Status.StepDisplay, h.ro.Status.Message)
}

func (h *harness) stepIs(i int32) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		st := ro.Status
		return st.CurrentStepIndex != nil && *st.CurrentStepIndex == i && st.StepAcknowledgedAt != nil
	}
}

func healthy(ro *v1alpha1.Rollout) bool {
	tr := ro.Status.Traffic
	return ro.Status.Phase == v1alpha1.PhaseHealthy && tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion
}

// markAvailable plays the ReplicaSet controller and kubelet: every pod a
// ReplicaSet asks for is available.
func (h *harness) markAvailable() {
	h.t.Helper()
	markAvailable(h.t, h.c, h.key.Namespace)
}

func markAvailable(t testing.TB, c client.Client, ns string) {
	t.Helper()
	if err := kubetest.MarkAvailable(context.Background(), c, ns); err != nil {
		t.Error(err)
	}
}

func (h *harness) setImage(image string) string {
	h.t.Helper()
	h.refresh()
	h.ro.Spec.Template.Spec.Containers[0].Image = image
	if err := h.c.Update(context.Background(), h.ro); err != nil {
		h.t.Fatal(err)
	}
	rev, err := engine.DesiredRevision(&h.ro.Spec)
	if err != nil {
		h.t.Fatal(err)
	}
	return rev
}

func (h *harness) replicaSet(rev string) *appsv1.ReplicaSet {
	h.t.Helper()
	rs := &appsv1.ReplicaSet{}
	key := types.NamespacedName{Namespace: h.key.Namespace, Name: workload.Name(h.key.Name, rev)}
	if err := h.c.Get(context.Background(), key, rs); err != nil {
		h.t.Fatalf("ReplicaSet of revision %s: %v", rev, err)
	}
	return rs
}

func (h *harness) wantReplicas(rev string, n int32) {
	h.t.Helper()
	if got := *h.replicaSet(rev).Spec.Replicas; got != n {
		h.t.Fatalf("ReplicaSet of %s has %d replicas, want %d", rev, got, n)
	}
}

// plan is the last plan the reconciler published.
func (h *harness) plan() plan.Plan {
	h.t.Helper()
	p, ok := h.plane.last(h.ro)
	if !ok {
		h.t.Fatal("no plan published")
	}
	return p
}

func (h *harness) wantCanaryWeight(w int32) {
	h.t.Helper()
	p := h.plan()
	if got := p.Hosts[0].Weight(plan.Canary); got != w {
		h.t.Fatalf("published canary weight %d, want %d (plan %s)", got, w, p.Version)
	}
	if got := h.ro.Status.Traffic.CanaryWeight; got != w {
		h.t.Fatalf("status canary weight %d, want %d", got, w)
	}
}

// stepRun is the AnalysisRun of the current step.
func (h *harness) stepRun() *v1alpha1.AnalysisRun {
	h.t.Helper()
	for _, st := range h.ro.Status.Analysis {
		if st.Kind == v1alpha1.AnalysisStepKind && !st.Terminated {
			run := &v1alpha1.AnalysisRun{}
			key := types.NamespacedName{Namespace: h.key.Namespace, Name: st.Name}
			if err := h.c.Get(context.Background(), key, run); err != nil {
				h.t.Fatalf("AnalysisRun %s: %v", st.Name, err)
			}
			return run
		}
	}
	h.t.Fatal("no step analysis run in status")
	return nil
}

// finishRun writes a run's outcome as the analysis controller would.
func (h *harness) finishRun(run *v1alpha1.AnalysisRun, phase v1alpha1.AnalysisPhase, msg string) {
	h.t.Helper()
	run.Status.Phase, run.Status.Message = phase, msg
	run.Status.Metrics = []v1alpha1.MetricResult{{Name: "success-rate", Phase: phase, LastValue: "0.95", Message: msg}}
	if err := h.c.Status().Update(context.Background(), run); err != nil {
		h.t.Fatal(err)
	}
}
