package gitapply

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Revert performs the engine's GitRevert action for ro (kube/controller's
// Reverter): a commit on the source branch that sets the Rollout's pod
// template back to the stable revision, pushed without force. The commit
// message quotes the failed analysis measurements from ro's status.
//
// Only Rollouts this source applied are reverted: writing to a repository
// the Rollout did not come from would change the wrong file, or none.
func (a *Applier) Revert(ctx context.Context, ro *v1alpha1.Rollout, r engine.GitRevert) (gitsync.RevertResult, error) {
	id := ro.Namespace + "/" + ro.Name
	if !a.opts.WriteBack {
		return gitsync.RevertResult{}, fmt.Errorf("rollout %s: Git write-back is off for this controller; revert it to %s in Git by hand", id, r.StableRevision)
	}
	snap := a.syncer.State().Applied
	if snap == nil {
		return gitsync.RevertResult{}, fmt.Errorf("rollout %s: %w", id, errNotSynced)
	}
	c := commit{snap: snap, source: a.opts.SourceID}
	// Its own, and from the repository and path followed now: after the
	// source's URL or path changed, the file to edit is not here.
	if !c.ours(ro) || !c.fromRepository(ro) {
		return gitsync.RevertResult{}, fmt.Errorf("rollout %s was not applied from %s (path %s); revert it where it is declared", id, snap.Repository, snap.Path)
	}
	req := gitsync.RevertRequest{GitRevert: r}
	for _, run := range ro.Status.Analysis {
		if run.Phase == v1alpha1.AnalysisFailed || run.Phase == v1alpha1.AnalysisError {
			req.Analysis = append(req.Analysis, run.Metrics...)
		}
	}
	res, err := a.syncer.Revert(ctx, req)
	if err != nil {
		return gitsync.RevertResult{}, fmt.Errorf("reverting rollout %s to %s in Git: %w", id, r.StableRevision, err)
	}
	a.log.Info("Git write-back", "rollout", id, "outcome", res.Outcome, "commit", res.Commit, "file", res.File,
		"stable", r.StableRevision, "failed", r.FailedRevision)
	return res, nil
}
