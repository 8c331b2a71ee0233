package analysisrun

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// maxConflicts bounds how often one reconcile replays its measurements
// onto a fresh read. Only the Rollout reconciler writes a run besides us
// (spec.terminate, once), so a second conflict in a row is already rare.
const maxConflicts = 5

// persist writes run.Status, computed from base, through the status
// subresource as a merge patch guarded by base's resourceVersion. If the
// run changed since base was read, the API server refuses the write (409
// Conflict); then the run is read afresh and results, the measurements
// taken for run.Status, are recorded onto it with analysis.Step instead of
// being taken again. Step ignores a result whose index the fresh status
// already holds, so a replay can neither duplicate nor skip one, and it
// applies whatever changed meanwhile (spec.terminate completes the run
// with these results included).
//
// It returns the run as persisted. Events and metrics go out only for
// what was persisted.
func (r *Reconciler) persist(ctx context.Context, base, run *v1alpha1.AnalysisRun, results []analysis.Result) (*v1alpha1.AnalysisRun, error) {
	key := client.ObjectKeyFromObject(run)
	for attempt := 0; ; attempt++ {
		if equality.Semantic.DeepEqual(base.Status, run.Status) {
			// base was read fresh (or is our own last write), so the
			// cache holding this version is current.
			r.remember(run)
			return run, nil
		}
		patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
		err := r.Client.Status().Patch(ctx, run, patch)
		if err == nil {
			r.remember(run)
			r.report(ctx, &base.Status, run)
			return run, nil
		}
		if !apierrors.IsConflict(err) || attempt == maxConflicts {
			return nil, fmt.Errorf("write status of AnalysisRun %s: %w", key, err)
		}
		fresh := &v1alpha1.AnalysisRun{}
		if err := r.APIReader.Get(ctx, key, fresh); err != nil {
			return nil, wrapGet(key, err)
		}
		base, run = fresh, fresh.DeepCopy()
		run.Status = analysis.Step(analysis.Input{Run: fresh, Results: results, Now: r.now()}).Status
	}
}
