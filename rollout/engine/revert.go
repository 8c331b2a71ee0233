package engine

import (
	"time"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The Git write-back after an automatic abort is the one action whose loss
// would be visible for good: without it Git keeps naming the failed
// revision. So it is not an edge in Output.Actions but a record in the
// status (status.gitRevert), persisted with the abort, and the action is
// derived from that record on every Step until an attempt succeeds. That
// is what makes it survive a crash in either mode: whatever status was
// saved, the next Step asks again.

// Retry timing of failed write-backs: the first retry after revertRetryMin,
// doubling up to revertRetryMax. A remote that refuses pushes for hours is
// asked every few minutes, not in a tight loop, and each failure is an
// Event.
const (
	revertRetryMin = 10 * time.Second
	revertRetryMax = 10 * time.Minute
)

func revertBackoff(failures int32) time.Duration {
	d := revertRetryMin
	for i := int32(1); i < failures && d < revertRetryMax; i++ {
		d *= 2
	}
	return min(d, revertRetryMax)
}

// requestRevert records the write-back for the abort just made; finish
// asks for the first attempt.
func (s *stepper) requestRevert() {
	st := &s.st
	st.GitRevert = &v1alpha1.GitRevertStatus{
		FailedRevision: st.CanaryRevision,
		StableRevision: st.StableRevision,
		Phase:          v1alpha1.GitRevertPending,
		RequestedAt:    *mt(s.now),
	}
}

// pendingRevert is the write-back still to do, if any.
func (s *stepper) pendingRevert() *v1alpha1.GitRevertStatus {
	if g := s.st.GitRevert; g != nil && g.Phase == v1alpha1.GitRevertPending {
		return g
	}
	return nil
}

// RevertOutstanding reports whether st records a write-back attempt that
// was asked for and has not reported back, and returns the answer for an
// adapter that finds one it is not running (it restarted, or lost the
// attempt): failed with RevertInterrupted, which asks again at once.
func RevertOutstanding(st *v1alpha1.RolloutStatus) (RevertResult, bool) {
	g := st.GitRevert
	if g == nil || g.Phase != v1alpha1.GitRevertPending || g.Attempts <= g.Failures {
		return RevertResult{}, false
	}
	return RevertResult{FailedRevision: g.FailedRevision, Attempt: g.Attempts, Err: RevertInterrupted}, true
}

// RevertInterrupted is the error an adapter reports for an attempt it
// lost.
const RevertInterrupted = "the attempt was interrupted (restart or lost worker); trying again"

// observeRevert folds in how the attempt under way ended.
func (s *stepper) observeRevert() {
	res, g := s.in.Observations.GitRevert, s.pendingRevert()
	if res == nil || g == nil || res.FailedRevision != g.FailedRevision || res.Attempt != g.Attempts || g.Attempts <= g.Failures {
		return
	}
	if res.Err != "" {
		g.Failures++
		wait := revertBackoff(g.Failures)
		if res.Err == RevertInterrupted {
			// Not the remote's answer: nothing to wait for.
			wait = 0
		}
		g.NextAttemptAt = mt(s.now.Add(wait))
		g.LastError = untrusted.Text(res.Err, 1024)
		s.event(EventWarning, v1alpha1.ReasonGitRevertFailed,
			"could not set Git back to %s (attempt %d, next in %s): %s; traffic stays on stable",
			g.StableRevision, g.Attempts, wait, g.LastError)
		return
	}
	g.Phase = v1alpha1.GitRevertDone
	g.NextAttemptAt, g.LastError = nil, ""
	g.Outcome = untrusted.Text(res.Outcome, 64)
	g.Commit = untrusted.Text(res.Commit, 64)
	s.event(EventNormal, v1alpha1.ReasonGitReverted, "Git set back to %s after the abort of %s: %s (commit %s)",
		g.StableRevision, g.FailedRevision, g.Outcome, g.Commit)
}

// supersedeRevert drops a pending write-back when Git moved on to another
// revision by itself: reverting now would undo the newer push. An attempt
// under way may still answer; it finds Git naming neither revision and
// leaves it alone.
func (s *stepper) supersedeRevert() {
	if g := s.pendingRevert(); g != nil && s.desired != g.FailedRevision {
		g.Phase = v1alpha1.GitRevertDone
		g.NextAttemptAt = nil
		g.Outcome = "superseded"
		s.event(EventNormal, v1alpha1.ReasonGitRevertSuperseded,
			"Git names revision %s now: the revert of %s is no longer needed", s.desired, g.FailedRevision)
	}
}

// cancelRevert drops a pending write-back when the user retries the
// aborted revision: reverting Git now would end the retry. An attempt
// already under way may still land; the spec then names stable and the
// retry ends, as any push back to stable would end it.
func (s *stepper) cancelRevert() {
	if g := s.pendingRevert(); g != nil {
		g.Phase = v1alpha1.GitRevertDone
		g.NextAttemptAt = nil
		g.Outcome = "cancelled"
		s.event(EventNormal, v1alpha1.ReasonGitRevertSuperseded,
			"retrying %s: the revert of Git to %s is cancelled", g.FailedRevision, g.StableRevision)
	}
}

// revertRetryAt is when the next attempt is due, if one waits for time.
func (s *stepper) revertRetryAt() (time.Time, bool) {
	g := s.pendingRevert()
	if g == nil || g.Attempts > g.Failures || g.NextAttemptAt == nil {
		return time.Time{}, false
	}
	return g.NextAttemptAt.Time, true
}

// dueRevert asks for an attempt when none is under way and the backoff,
// if any, is over. The request is recorded in the status it comes with,
// so it is asked for once, not at every Step.
func (s *stepper) dueRevert() {
	g, st := s.pendingRevert(), &s.st
	if g == nil || g.Attempts > g.Failures {
		return
	}
	if g.NextAttemptAt != nil && g.NextAttemptAt.After(s.now) {
		return
	}
	g.Attempts++
	g.LastAttemptAt = mt(s.now)
	rv := &GitRevert{
		Rollout:        s.ro.Name,
		Namespace:      s.ro.Namespace,
		StableRevision: g.StableRevision,
		FailedRevision: g.FailedRevision,
		Attempt:        g.Attempts,
	}
	if st.StableRevision == g.StableRevision {
		rv.StableBackend = st.StableBackend.DeepCopy()
	}
	if a := st.Abort; a != nil && st.CanaryRevision == g.FailedRevision {
		rv.Reason, rv.Message = a.Reason, a.Message
	} else if lr := st.LastRollout; lr != nil && lr.Revision == g.FailedRevision {
		rv.Reason, rv.Message = lr.Reason, lr.Message
	}
	s.reverts = append(s.reverts, Action{Kind: ActionGitRevert, Revert: rv})
}
