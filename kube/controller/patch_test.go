package controller

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A spec change whose reconcile succeeds costs one status write: the
// Reconciled condition moves to the new generation in the same patch as
// the engine's status. When a stage fails, a second write says so.
func TestSpecChangeWritesStatusOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		publishErr  error
		wantPatches int32
		wantStatus  metav1.ConditionStatus
		wantReason  string
	}{
		{name: "carried out", wantPatches: 1, wantStatus: metav1.ConditionTrue, wantReason: ReasonSucceeded},
		{name: "publish fails", publishErr: errors.New("the data plane is away"), wantPatches: 2,
			wantStatus: metav1.ConditionFalse, wantReason: ReasonPublishFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setWeight(20), setWeight(60))
			h.drive("healthy on v1", healthy)
			h.setImage("checkout:v2")

			var patches atomic.Int32
			c := interceptor.NewClient(h.c, interceptor.Funcs{
				SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
					if sub == "status" {
						patches.Add(1)
					}
					return c.SubResource(sub).Patch(ctx, obj, p, opts...)
				},
			})
			r := h.reconciler(c)
			if tc.publishErr != nil {
				r.Publisher = PublisherFunc(func(context.Context, *v1alpha1.Rollout, plan.Plan) error { return tc.publishErr })
			}
			h.r = r
			_, _ = h.reconcile()

			if got := patches.Load(); got != tc.wantPatches {
				t.Errorf("status patches in the reconcile of the new spec: %d, want %d", got, tc.wantPatches)
			}
			c2 := findCondition(h.ro, ConditionReconciled)
			switch {
			case c2 == nil:
				t.Fatalf("no Reconciled condition in %+v", h.ro.Status.Conditions)
			case c2.Status != tc.wantStatus || c2.Reason != tc.wantReason:
				t.Errorf("Reconciled %s/%s, want %s/%s", c2.Status, c2.Reason, tc.wantStatus, tc.wantReason)
			case c2.ObservedGeneration != h.ro.Generation:
				t.Errorf("Reconciled observedGeneration %d, want the spec's %d", c2.ObservedGeneration, h.ro.Generation)
			}
			if h.ro.Status.CanaryRevision == "" {
				t.Errorf("status %+v: want the new revision persisted as canary", h.ro.Status)
			}
		})
	}
}
