package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// statusPatcher writes a Rollout's status through the status subresource
// as a merge patch from the last written state, guarded by the
// resourceVersion it was read at (optimistic concurrency): if anyone
// changed the Rollout since, the API server answers 409 Conflict and
// nothing is written. The engine decided from what this reconcile read, so
// a stale decision must not land; the reconcile is retried from a fresh
// read instead. This is the role of Flux's patch.SerialPatcher, cut down to
// the status, which is all this reconciler writes on its own object.
type statusPatcher struct {
	c      client.Client
	before *v1alpha1.Rollout
}

func newStatusPatcher(c client.Client, ro *v1alpha1.Rollout) *statusPatcher {
	return &statusPatcher{c: c, before: ro.DeepCopy()}
}

// patch writes ro.Status if it differs from the last written status. On
// success ro carries the new resourceVersion and becomes the base of the
// next patch.
func (p *statusPatcher) patch(ctx context.Context, ro *v1alpha1.Rollout) error {
	if equality.Semantic.DeepEqual(p.before.Status, ro.Status) {
		return nil
	}
	mp := client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})
	if err := p.c.Status().Patch(ctx, ro, mp); err != nil {
		return fmt.Errorf("patch status of rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	p.before = ro.DeepCopy()
	return nil
}
