package controller

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The Git revert after an automatic abort lives in status.gitRevert: the
// engine asks for an attempt in the status it returns, so the request is
// in the API server before the reconciler pushes anything. The attempt
// runs in act, after the status is saved; its result waits here for the
// Rollout's next reconcile (asked for at once). A controller that dies in
// between — or a new leader — finds the attempt recorded but no result,
// reports it interrupted, and is asked again; gitsync answers a revert
// that already landed with "unchanged", so the branch gets one commit.

// revertRequeue is how soon a Rollout is reconciled again to take in the
// result of a write-back attempt.
const revertRequeue = 100 * time.Millisecond

// revertResults holds attempt results not yet handed to a step.
type revertResults struct {
	mu sync.Mutex
	m  map[types.NamespacedName]engine.RevertResult
}

func (rr *revertResults) observation(key types.NamespacedName, st *v1alpha1.RolloutStatus) *engine.RevertResult {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if res, ok := rr.m[key]; ok {
		return &res
	}
	// Attempts run inside a reconcile, and one Rollout is never reconciled
	// twice at once: an attempt recorded without a result was lost.
	if lost, ok := engine.RevertOutstanding(st); ok {
		return &lost
	}
	return nil
}

func (rr *revertResults) set(key types.NamespacedName, res engine.RevertResult) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.m == nil {
		rr.m = map[types.NamespacedName]engine.RevertResult{}
	}
	rr.m[key] = res
}

// observed forgets res once the status that took it in is saved.
func (rr *revertResults) observed(key types.NamespacedName, res *engine.RevertResult) {
	if res == nil {
		return
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if got, ok := rr.m[key]; ok && got == *res {
		delete(rr.m, key)
	}
}

func (rr *revertResults) forget(key types.NamespacedName) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	delete(rr.m, key)
}

// revert runs one write-back attempt and keeps its result for the next
// reconcile, which the engine turns into status and Events (and a retry
// with backoff after a failure).
func (r *Reconciler) revert(ctx context.Context, rc *reconcileContext, rv engine.GitRevert) {
	res := engine.RevertResult{FailedRevision: rv.FailedRevision, Attempt: rv.Attempt}
	if r.Reverter == nil {
		res.Err = "rollback.gitRevert is set but this controller has no Git write-back; revert " + rv.StableRevision + " in Git by hand"
	} else if out, err := r.Reverter.Revert(ctx, rc.ro, rv); err != nil {
		res.Err = err.Error()
	} else {
		res.Outcome, res.Commit = string(out.Outcome), out.Commit
	}
	r.reverts.set(types.NamespacedName{Namespace: rc.ro.Namespace, Name: rc.ro.Name}, res)
	rc.reverted = true
}
