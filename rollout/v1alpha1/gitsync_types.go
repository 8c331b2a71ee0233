package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Bounds of the Git sync state, which repeats text from Git (file names,
// reasons) on every Rollout of a source: a commit with many problems lists
// the first MaxGitSyncProblems and counts the rest.
const (
	MaxGitSyncProblems = 10
	// MaxGitSyncText bounds Message and a problem's Reason.
	MaxGitSyncText = 1024
	// MaxGitSyncName bounds a problem's File and Field.
	MaxGitSyncName = 512
)

// GitSyncStatus is the state of a Git source as far as one Rollout is
// concerned, so that `sluice status` and `kubectl get` tell the truth
// after a push that was not applied: HeadCommit is what the source's ref
// names, AppliedCommit what is in force; they differ while the head is
// rejected (Rejected says why) or not applied yet. The source is in sync
// when both are equal and Message is empty (InSync).
//
// Commit times and fetch times are left out on purpose: the state changes
// only when a commit is pushed, judged or applied, so a poll that finds
// nothing new writes nothing.
type GitSyncStatus struct {
	// Source is the GitSource the Rollout is applied from, as
	// namespace/name; empty for the source of the configuration file
	// (`sluice run`'s, or the controller's git section).
	// +optional
	// +kubebuilder:validation:MaxLength=317
	Source string `json:"source,omitempty"`
	// HeadCommit is the commit the source's ref named at the last look at
	// the remote.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	HeadCommit string `json:"headCommit,omitempty"`
	// AppliedCommit is the commit in force: the last good commit, which
	// stays applied while later ones are rejected.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	AppliedCommit string `json:"appliedCommit,omitempty"`
	// Rejected is the last commit judged invalid, until a later commit
	// applies; usually the head, or an earlier head that was rejected
	// before the remote became unreachable.
	// +optional
	Rejected *GitRejection `json:"rejected,omitempty"`
	// Message says what else keeps the head from being known or in force:
	// the last fetch's error (the head may have moved since), or the API
	// server's refusal of part of the commit (controller mode). Empty when
	// nothing.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// GitRejection is a commit that was judged and not applied: the whole
// commit is rejected when any manifest in it is invalid.
type GitRejection struct {
	// +kubebuilder:validation:MaxLength=64
	Commit string `json:"commit"`
	// At is when it was judged.
	// +optional
	At *metav1.Time `json:"at,omitempty"`
	// Problems are the first invalid manifests, in file and line order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Problems []GitSourceProblem `json:"problems,omitempty"`
	// ProblemCount is the number of problems, also those not listed.
	// +optional
	ProblemCount int32 `json:"problemCount,omitempty"`
	// Message says why when the reason is not a list of problems (a
	// limit on files or objects).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// InSync reports whether the head commit is the commit in force and
// nothing else is wrong (Message); a nil status is not in sync (nothing
// says what Git holds).
func (g *GitSyncStatus) InSync() bool {
	return g != nil && g.HeadCommit != "" && g.HeadCommit == g.AppliedCommit && g.Message == "" &&
		(g.Rejected == nil || g.Rejected.Commit != g.HeadCommit)
}
