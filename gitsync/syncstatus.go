package gitsync

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// SyncStatus is st as the API shows it on each Rollout of the source
// (v1alpha1.GitSyncStatus): the head, the commit in force, the commit
// rejected and its first problems, and the last fetch's error. Text from
// Git (file names, reasons) is bounded and its control characters escaped,
// since it is written into objects and shown on terminals.
func (st State) SyncStatus() *v1alpha1.GitSyncStatus {
	out := &v1alpha1.GitSyncStatus{HeadCommit: st.Head}
	if st.Applied != nil {
		out.AppliedCommit = st.Applied.Commit.SHA
	}
	if r := st.Rejected; r != nil {
		out.Rejected = RejectionOf(r, st.RejectedAt)
	}
	// A rejection already says why the head is not in force; any other
	// error is the remote's or the mirror's.
	if st.Err != nil && RejectedOf(st.Err) == nil {
		out.Message = untrusted.Text(strings.TrimSpace(st.Err.Error()), v1alpha1.MaxGitSyncText)
	}
	return out
}

// RejectionOf is a rejected commit as the API records it: at most
// v1alpha1.MaxGitSyncProblems problems, each bounded, and their count;
// without problems, the error (a limit) as the message.
func RejectionOf(r *Error, at time.Time) *v1alpha1.GitRejection {
	out := &v1alpha1.GitRejection{Commit: r.Commit, ProblemCount: int32(len(r.Problems))}
	if !at.IsZero() {
		// Whole seconds, as the API server keeps them: a status compared
		// with what was read back is then equal, and not written again.
		t := metav1.NewTime(at.Truncate(time.Second))
		out.At = &t
	}
	for _, p := range r.Problems[:min(len(r.Problems), v1alpha1.MaxGitSyncProblems)] {
		out.Problems = append(out.Problems, v1alpha1.GitSourceProblem{
			File:   untrusted.Text(p.File, v1alpha1.MaxGitSyncName),
			Line:   int32(min(p.Line, 1<<31-1)),
			Field:  untrusted.Text(p.Field, v1alpha1.MaxGitSyncName),
			Reason: untrusted.Text(p.Reason, v1alpha1.MaxGitSyncText),
		})
	}
	if len(r.Problems) == 0 && r.Err != nil {
		out.Message = untrusted.Text(strings.TrimSpace(r.Err.Error()), v1alpha1.MaxGitSyncText)
	}
	return out
}
