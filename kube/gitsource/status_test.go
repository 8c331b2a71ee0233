package gitsource

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// readyOf maps every state of an Applier to its Ready condition, Git's
// trouble before the apply's; a rejected commit's problems are capped.
func TestStatusOf(t *testing.T) {
	t.Parallel()
	problems := make([]manifest.Problem, 25)
	for i := range problems {
		problems[i] = manifest.Problem{File: "apps/a.yaml", Line: i + 1, Field: "metadata.namespace", Reason: "Forbidden"}
	}
	gitErr := func(kind gitsync.ErrorKind) error {
		return &gitsync.Error{Kind: kind, Op: "fetch", Err: errors.New(string(kind))}
	}
	rejection := &gitsync.Error{Kind: gitsync.KindInvalidCommit, Op: "load", Commit: "bad", Problems: problems, Err: errors.New("invalid")}
	conflict := fmt.Errorf("apply: %w", &gitapply.ConflictError{Object: "Rollout a/b", Owner: "a/other", File: "f.yaml", Line: 1})
	for _, tc := range []struct {
		name     string
		st       gitapply.State
		status   metav1.ConditionStatus
		reason   string
		problems int
	}{
		{"first sync pending", gitapply.State{}, metav1.ConditionUnknown, v1alpha1.GitSourceProgressing, 0},
		{"synced", gitapply.State{Commit: "abc"}, metav1.ConditionTrue, v1alpha1.GitSourceSynced, 0},
		{"rejected", gitapply.State{Commit: "abc", Git: gitsync.State{Err: rejection, Rejected: rejection}}, metav1.ConditionFalse, v1alpha1.GitSourceCommitRejected, v1alpha1.MaxGitSourceProblems},
		// The remote went away after the rejection: Ready says so, and
		// the rejected commit's problems stay listed.
		{"rejected, then unreachable", gitapply.State{Commit: "abc", Git: gitsync.State{Err: gitErr(gitsync.KindUnreachable), Rejected: rejection}}, metav1.ConditionFalse, v1alpha1.GitSourceFetchFailed, v1alpha1.MaxGitSourceProblems},
		{"auth", gitapply.State{Git: gitsync.State{Err: gitErr(gitsync.KindAuth)}}, metav1.ConditionFalse, v1alpha1.GitSourceAuthFailed, 0},
		{"unreachable", gitapply.State{Git: gitsync.State{Err: gitErr(gitsync.KindUnreachable)}}, metav1.ConditionFalse, v1alpha1.GitSourceFetchFailed, 0},
		{"config", gitapply.State{Git: gitsync.State{Err: gitErr(gitsync.KindConfig)}}, metav1.ConditionFalse, v1alpha1.GitSourceInvalidSource, 0},
		{"conflict", gitapply.State{Commit: "abc", Err: conflict}, metav1.ConditionFalse, v1alpha1.GitSourceConflict, 0},
		{"apply failed", gitapply.State{Commit: "abc", Err: errors.New("forbidden")}, metav1.ConditionFalse, v1alpha1.GitSourceApplyFailed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs := &v1alpha1.GitSource{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			st := statusOf(gs, tc.st)
			c := readyCondition(&v1alpha1.GitSource{Status: st})
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || c.ObservedGeneration != 3 || st.ObservedGeneration != 3 {
				t.Fatalf("Ready %+v, generation %d: want %s %s at 3", c, st.ObservedGeneration, tc.status, tc.reason)
			}
			if len(st.Problems) != tc.problems {
				t.Errorf("%d problems listed, want %d", len(st.Problems), tc.problems)
			}
			if tc.problems > 0 && (st.ProblemCount != 25 || !strings.Contains(st.LastAttemptMessage, "commit abc stays in force")) {
				t.Errorf("problemCount %d, message %q: want 25 and the commit in force", st.ProblemCount, st.LastAttemptMessage)
			}
		})
	}
}
