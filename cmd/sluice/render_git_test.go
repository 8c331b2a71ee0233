package main

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The detail view's Git lines: where the spec came from, whether its
// source is in sync, and a rejected commit's problems, with the file
// names and reasons from Git escaped.
func TestGitLines(t *testing.T) {
	t.Parallel()
	const head, applied = "2222222222222222222222222222222222222222", "1111111111111111111111111111111111111111"
	prov := &v1alpha1.GitProvenance{Commit: applied, Path: "apps/\x1b[31mreviews.yaml"}
	for _, tc := range []struct {
		name string
		g    *v1alpha1.GitSyncStatus
		want []string
	}{
		{"not from a source", nil, []string{`  Git:      111111111111 apps/\x1b[31mreviews.yaml`}},
		{"in sync", &v1alpha1.GitSyncStatus{HeadCommit: applied, AppliedCommit: applied, Source: "team/books"}, []string{
			`  Git:      111111111111 apps/\x1b[31mreviews.yaml`,
			"  Source:   in sync: head 111111111111 is in force  (GitSource team/books)",
		}},
		{"rejected", &v1alpha1.GitSyncStatus{HeadCommit: head, AppliedCommit: applied, Rejected: &v1alpha1.GitRejection{
			Commit: head, ProblemCount: 12, Problems: []v1alpha1.GitSourceProblem{{File: "apps/r.yaml", Line: 9, Field: "spec.replicas", Reason: "forged\nSluice: promoted"}},
		}}, []string{
			`  Git:      111111111111 apps/\x1b[31mreviews.yaml`,
			`  Source:   NOT SYNCED: head commit 222222222222 was rejected (apps/r.yaml:9: spec.replicas: forged\nSluice: promoted, and 11 more); 111111111111 stays in force`,
			"            rejected 222222222222:",
			`              apps/r.yaml:9: spec.replicas: forged\nSluice: promoted`,
			"              (11 more not listed)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := gitLines(prov, tc.g)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Controller mode shows desired and ready pods per revision.
func TestPodsLine(t *testing.T) {
	t.Parallel()
	st := v1alpha1.RolloutStatus{StableReplicas: &v1alpha1.RevisionReplicas{Desired: 3, Ready: 3}, CanaryReplicas: &v1alpha1.RevisionReplicas{Desired: 1, Ready: 0}}
	if got, want := podsLine(st), "stable 3/3 ready, canary 0/1 ready"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := podsLine(v1alpha1.RolloutStatus{}); got != "" {
		t.Errorf("no pods of its own: got %q, want nothing", got)
	}
}
