package controller

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// statusPatches counts the status writes the API server is sent, and
// fails the next one when failNext is set.
type statusPatches struct {
	n        atomic.Int32
	failNext atomic.Bool
}

func (s *statusPatches) client(c client.WithWatch) client.WithWatch {
	return interceptor.NewClient(c, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub != "status" {
				return c.SubResource(sub).Patch(ctx, obj, p, opts...)
			}
			if s.failNext.CompareAndSwap(true, false) {
				return errors.New("the controller stopped before the status write")
			}
			s.n.Add(1)
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
}

// Where the accepted write is the data plane's answer (AcceptedOnWrite,
// the Istio writer without xDS clients), a weight step costs one status
// write: the plan, its acknowledgement and the next step's scale are
// persisted together. Where proxies answer later, the plan pending is
// persisted first and the acknowledgement by the next reconcile, as
// the engine's order says. Counted at the API server over the
// reconciles that take a ready canary to the next step.
func TestAcknowledgedStepWritesStatusOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// onWrite wraps the test's data plane in AcceptedOnWrite.
		onWrite bool
		// reconciles and status writes from the canary ready at one
		// replica to step 2 (60%) started, acknowledged.
		wantReconciles, wantPatches int32
	}{
		{name: "answered by the write", onWrite: true, wantReconciles: 1, wantPatches: 1},
		{name: "answered by proxies later", onWrite: false, wantReconciles: 2, wantPatches: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setWeight(20), setWeight(60))
			var sp statusPatches
			c := sp.client(h.c)
			h.r = h.reconciler(c)
			if tc.onWrite {
				a := NewAcceptedOnWrite(h.plane)
				h.r.Publisher, h.r.Acknowledger = a, a
			}
			h.drive("healthy on v1", healthy)
			h.setImage("checkout:v2")
			h.subsetOnly()
			h.markAvailable()
			sp.n.Store(0)
			var reconciles int32
			for !at20(h.ro) && reconciles < 5 {
				h.mustReconcile()
				reconciles++
			}
			if !at20(h.ro) {
				t.Fatalf("not at step 2 with 20%% acknowledged after %d reconciles: %+v", reconciles, h.ro.Status)
			}
			h.wantCanaryWeight(20)
			if reconciles != tc.wantReconciles {
				t.Errorf("reconciles from the canary ready to the next step: %d, want %d", reconciles, tc.wantReconciles)
			}
			if got := sp.n.Load(); got != tc.wantPatches {
				t.Errorf("status writes from the canary ready to the next step: %d, want %d", got, tc.wantPatches)
			}
			if tr := h.ro.Status.Traffic; tr.AcknowledgedVersion != h.plan().Version {
				t.Errorf("acknowledged %q, want the published plan %s", tr.AcknowledgedVersion, h.plan().Version)
			}
			if n := h.ev.count("Normal StepAdvanced"); n < 2 {
				t.Errorf("StepAdvanced Events %d, want one per step taken: %v", n, h.ev.all())
			}
			h.drive("promoted", healthy)
		})
	}
}

// A controller that stops after publishing ahead of the status write
// leaves the plan in force and the status before it. After the restart
// (a new reconciler, remembering nothing) the engine decides the same
// plan from that status, the write changes nothing, and its answer
// completes the step: no step is skipped, none repeated, and the plan
// published between is the one the status then records.
func TestCrashBeforeStatusOfPlanWritten(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setWeight(20), setWeight(60))
	var sp statusPatches
	c := sp.client(h.c)
	restart := func() {
		h.r = h.reconciler(c)
		a := NewAcceptedOnWrite(h.plane)
		h.r.Publisher, h.r.Acknowledger = a, a
	}
	restart()
	h.drive("healthy on v1", healthy)
	h.setImage("checkout:v2")
	h.subsetOnly()
	before := h.ro.Status.DeepCopy()
	h.markAvailable()
	sp.failNext.Store(true)
	if _, err := h.reconcile(); err == nil {
		t.Fatal("reconcile with the status write failing: no error")
	}
	if h.ro.Status.Traffic.PlanVersion != before.Traffic.PlanVersion {
		t.Fatalf("status moved to plan %s without its write", h.ro.Status.Traffic.PlanVersion)
	}
	inForce := h.plan()
	if inForce.Version == before.Traffic.PlanVersion {
		t.Fatal("the step's plan was not published ahead of the status write")
	}

	restart()
	h.now = h.now.Add(time.Second)
	h.mustReconcile()
	if !at20(h.ro) {
		t.Fatalf("after the restart: %+v, want step 2 with 20%% acknowledged", h.ro.Status)
	}
	if got := h.plan().Version; got != inForce.Version || h.ro.Status.Traffic.AcknowledgedVersion != got {
		t.Errorf("after the restart: plan %s published, %s acknowledged; want the plan in force %s",
			got, h.ro.Status.Traffic.AcknowledgedVersion, inForce.Version)
	}
	h.wantCanaryWeight(20)
	h.drive("promoted", healthy)
}

// subsetOnly reconciles a new revision, its canary never ready, until
// the plan with the canary's subset at 0% is acknowledged.
func (h *harness) subsetOnly() {
	h.t.Helper()
	for range 5 {
		h.mustReconcile()
		tr := h.ro.Status.Traffic
		if h.ro.Status.CanaryRevision != "" && len(tr.Subsets) == 2 && tr.AcknowledgedVersion == tr.PlanVersion {
			return
		}
	}
	h.t.Fatalf("the canary's subset is not acknowledged: %+v", h.ro.Status)
}

// at20 holds once the first step's 20% is acknowledged and the rollout
// has moved on to the second step (60%), which waits for its replicas.
func at20(ro *v1alpha1.Rollout) bool {
	st := ro.Status
	tr := st.Traffic
	return st.CurrentStepIndex != nil && *st.CurrentStepIndex == 1 && tr.CanaryWeight == 20 &&
		tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion
}

// Acknowledgers answer on the write only when every one of them does: one
// that cannot say (the test's plane, proxies that answer later) holds the
// usual order.
func TestAcknowledgersOnWrite(t *testing.T) {
	t.Parallel()
	onWrite := NewAcceptedOnWrite(PublisherFunc(func(context.Context, *v1alpha1.Rollout, plan.Plan) error { return nil }))
	for _, tc := range []struct {
		name string
		as   Acknowledgers
		want bool
	}{
		{name: "none", as: Acknowledgers{}, want: true},
		{name: "accepted writes", as: Acknowledgers{onWrite, onWrite}, want: true},
		{name: "one answers later", as: Acknowledgers{onWrite, newFakePlane()}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := newRollout("shop", "checkout", "checkout:v1")
			if got := tc.as.AcknowledgesOnWrite(ro); got != tc.want {
				t.Errorf("AcknowledgesOnWrite %v, want %v", got, tc.want)
			}
		})
	}
}
