package gitsource

import (
	"cmp"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// maxMessage bounds condition and attempt messages: a commit with many
// problems lists them in status.problems, not in one long string.
const maxMessage = 2048

// ready is the Ready condition in words, before it gets its times.
type ready struct {
	status metav1.ConditionStatus
	reason string
	msg    string
}

// statusOf is the GitSource's status for its Applier's state: what the
// Applier applied and, when the source's current commit is not in force,
// why not. prev supplies what a restarted Applier does not know yet (the
// commit an earlier process applied) and the condition's transition time.
func statusOf(gs *v1alpha1.GitSource, st gitapply.State) v1alpha1.GitSourceStatus {
	prev := &gs.Status
	out := v1alpha1.GitSourceStatus{
		ObservedGeneration:  gs.Generation,
		Conditions:          cloneConditions(prev.Conditions),
		LastAppliedCommit:   cmp.Or(st.Commit, prev.LastAppliedCommit),
		LastAttemptedCommit: cmp.Or(st.Git.Head, prev.LastAttemptedCommit),
		LastSyncTime:        prev.LastSyncTime,
	}
	if !st.Git.LastFetch.IsZero() {
		t := metav1.NewTime(st.Git.LastFetch)
		out.LastSyncTime = &t
	}
	r := readyOf(st)
	if r.status != metav1.ConditionTrue && st.Git.Err != nil {
		out.LastAttemptMessage = r.msg
	}
	// The rejection stands until a later commit applies, also while the
	// remote cannot be fetched (gitsync.State.Rejected).
	if rej := st.Git.Rejected; rej != nil && len(rej.Problems) > 0 {
		out.ProblemCount = int32(len(rej.Problems))
		for _, p := range rej.Problems[:min(len(rej.Problems), v1alpha1.MaxGitSourceProblems)] {
			out.Problems = append(out.Problems, v1alpha1.GitSourceProblem{
				File: untrusted.Text(p.File, v1alpha1.MaxGitSyncName), Line: int32(min(p.Line, 1<<31-1)),
				Field: untrusted.Text(p.Field, v1alpha1.MaxGitSyncName), Reason: untrusted.Text(p.Reason, v1alpha1.MaxGitSyncText),
			})
		}
	}
	setReady(&out, gs.Generation, r)
	return out
}

// readyOf says what Ready is: Git's own trouble first (nothing new can be
// applied), then the apply's, then whether the commit is in force.
func readyOf(st gitapply.State) ready {
	if err := st.Git.Err; err != nil {
		reason := v1alpha1.GitSourceFetchFailed
		switch gitsync.KindOf(err) {
		case gitsync.KindInvalidCommit, gitsync.KindLimit:
			reason = v1alpha1.GitSourceCommitRejected
		case gitsync.KindAuth:
			reason = v1alpha1.GitSourceAuthFailed
		case gitsync.KindConfig:
			reason = v1alpha1.GitSourceInvalidSource
		}
		msg := inForce(st, err)
		if rej := st.Git.Rejected; rej != nil && reason != v1alpha1.GitSourceCommitRejected {
			msg += fmt.Sprintf("; commit %s was rejected before and stays rejected", rej.Commit)
		}
		return ready{metav1.ConditionFalse, reason, msg}
	}
	if err := st.Err; err != nil {
		var conflict *gitapply.ConflictError
		if errors.As(err, &conflict) {
			return ready{metav1.ConditionFalse, v1alpha1.GitSourceConflict, err.Error()}
		}
		return ready{metav1.ConditionFalse, v1alpha1.GitSourceApplyFailed, "commit applied in part, retrying: " + err.Error()}
	}
	if st.Commit != "" {
		return ready{metav1.ConditionTrue, v1alpha1.GitSourceSynced, "applied commit " + st.Commit}
	}
	return ready{metav1.ConditionUnknown, v1alpha1.GitSourceProgressing, "waiting for the first sync"}
}

// inForce adds what stays in force to a Git error.
func inForce(st gitapply.State, err error) string {
	if st.Commit == "" {
		return err.Error() + "; nothing applied yet"
	}
	return fmt.Sprintf("%v; commit %s stays in force", err, st.Commit)
}

// setReady sets the Ready condition, its message cut to maxMessage.
func setReady(s *v1alpha1.GitSourceStatus, generation int64, r ready) {
	msg := r.msg
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	if s.LastAttemptMessage != "" {
		s.LastAttemptMessage = msg
	}
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: v1alpha1.GitSourceReady, Status: r.status, Reason: r.reason, Message: msg, ObservedGeneration: generation,
	})
}

// statusWithout is prev with Ready set to r and nothing else learnt: for
// a GitSource that is suspended or cannot be built.
func statusWithout(gs *v1alpha1.GitSource, r ready) v1alpha1.GitSourceStatus {
	out := *gs.Status.DeepCopy()
	out.ObservedGeneration = gs.Generation
	setReady(&out, gs.Generation, r)
	return out
}

func cloneConditions(in []metav1.Condition) []metav1.Condition {
	if in == nil {
		return nil
	}
	return append([]metav1.Condition(nil), in...)
}
