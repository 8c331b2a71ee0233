package controller

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// runManager starts a manager with the reconciler, as `sluice controller`
// would (leader election aside: one manager at a time here), and returns a
// function that stops it and waits until it has.
func runManager(t *testing.T, plane *fakePlane, ev *events) (stop func()) {
	t.Helper()
	restCfg, scheme := env.Start(t)
	return kubetest.RunManager(t, restCfg, manager.Options{Scheme: scheme, Cache: cache.Options{ByObject: CacheByObject()}},
		func(_ context.Context, mgr manager.Manager) error {
			r := &Reconciler{Client: mgr.GetClient(), Recorder: ev, Publisher: plane, Acknowledger: plane, AckPollInterval: 50 * time.Millisecond}
			return r.SetupWithManager(mgr)
		})
}

// eventually polls cond, playing the kubelet meanwhile, until it holds.
func eventually(t *testing.T, c client.Client, ns, what string, cond func() bool) {
	t.Helper()
	if poll.Holds(30*time.Second, 50*time.Millisecond, func() bool { markAvailable(t, c, ns); return cond() }) {
		return
	}
	var ro v1alpha1.Rollout
	_ = c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "checkout"}, &ro)
	t.Fatalf("timed out waiting until %s: phase %s step %s: %s; traffic %+v", what, ro.Status.Phase, ro.Status.StepDisplay, ro.Status.Message, ro.Status.Traffic)
}

// A controller restarted mid-rollout resumes at the same step with the
// same weights: the status is the whole state, so a new process with a
// data plane that remembers nothing republishes the same plan and carries
// on, neither repeating nor skipping a step.
func TestRestartResumesAtTheSameStep(t *testing.T) {
	c := cluster(t)
	ns := newNamespace(t, c)
	ctx := context.Background()
	get := func() *v1alpha1.Rollout {
		ro := &v1alpha1.Rollout{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "checkout"}, ro); err != nil {
			t.Fatal(err)
		}
		return ro
	}
	ev := &events{}
	stop := runManager(t, newFakePlane(), ev)
	ro := newRollout(ns, "checkout", "checkout:v1", setWeight(20), pauseUntilPromoted(), setWeight(60), pauseUntilPromoted())
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, ns, "healthy on v1", func() bool { return healthy(get()) })
	v1 := get().Status.StableRevision
	// The controller may still be writing the status: a conflict is the
	// API server's optimistic concurrency, retried as a user's kubectl would.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ro = get()
		ro.Spec.Template.Spec.Containers[0].Image = "checkout:v2"
		return c.Update(ctx, ro)
	}); err != nil {
		t.Fatal(err)
	}
	v2, _ := engine.DesiredRevision(&ro.Spec)
	paused := func(i int32, w int32) func() bool {
		return func() bool {
			st := get().Status
			return st.CurrentStepIndex != nil && *st.CurrentStepIndex == i && st.Phase == v1alpha1.PhasePaused &&
				st.Traffic.CanaryWeight == w && st.Traffic.AcknowledgedVersion == st.Traffic.PlanVersion
		}
	}
	eventually(t, c, ns, "paused at 20%", paused(1, 20))
	stop()
	before := get().Status

	plane := newFakePlane()
	runManager(t, plane, ev)
	eventually(t, c, ns, "the plan republished by the new manager", func() bool {
		p, ok := plane.last(get())
		return ok && p.Version == before.Traffic.PlanVersion
	})
	after := get().Status
	if *after.CurrentStepIndex != 1 || after.Traffic.CanaryWeight != 20 || after.Starts != before.Starts ||
		!after.StepAcknowledgedAt.Equal(before.StepAcknowledgedAt) {
		t.Fatalf("after restart: step %d weight %d starts %d acked %v; want step 1, 20%%, starts %d, acked %v",
			*after.CurrentStepIndex, after.Traffic.CanaryWeight, after.Starts, after.StepAcknowledgedAt, before.Starts, before.StepAcknowledgedAt)
	}

	promote := func(id string) {
		t.Helper()
		p, err := CommandPatch(Command{ID: id, Kind: v1alpha1.CommandPromote, By: "bob", At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Patch(ctx, get(), client.RawPatch(types.MergePatchType, p)); err != nil {
			t.Fatal(err)
		}
	}
	promote("p1")
	eventually(t, c, ns, "paused at 60%", paused(3, 60))
	promote("p2")
	eventually(t, c, ns, "promoted", func() bool { ro := get(); return healthy(ro) && ro.Status.StableRevision == v2 })
	eventually(t, c, ns, "the old ReplicaSet scaled down after its delay", func() bool {
		rs := &appsv1.ReplicaSet{}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: workload.Name("checkout", v1)}, rs)
		return err == nil && *rs.Spec.Replicas == 0
	})
	if _, ok := ev.find("Normal RolloutPromoted"); !ok {
		t.Errorf("no RolloutPromoted event: %v", ev.all())
	}
}
