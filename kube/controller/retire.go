package controller

import (
	"context"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A Rollout whose manifest left Git is not deleted: the Git applier marks
// it with gitsync.AnnotationRemovedFromGit, and from then on the reconciler
// runs engine.Retire in place of engine.Step. The rest of the reconcile is
// the same — persist, publish, scale, act — so the retirement is level-
// triggered like everything else: analysis runs are stopped, the plan goes
// back to 100% stable with the routes kept in place, the canary's replicas
// go to zero, and the summary emits the RemovedFromGit Warning Event.
// Deleting the Rollout is what removes its routes and workload.

// removedFromGit reports whether the Git applier marked ro as removed.
func removedFromGit(ro *v1alpha1.Rollout) bool {
	_, ok := ro.Annotations[gitsync.AnnotationRemovedFromGit]
	return ok
}

// retire is the step stage of a Rollout removed from Git.
func (r *Reconciler) retire(_ context.Context, _ *statusPatcher, rc *reconcileContext) error {
	rc.out = engine.Retire(engine.RetireInput{
		Input:  engine.Input{Rollout: rc.ro, Observations: rc.obs, Now: rc.now},
		Commit: rc.ro.Annotations[gitsync.AnnotationRemovedFromGit],
	})
	return nil
}
