package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// GitSource is a Git repository whose Rollouts, AnalysisTemplates and
// Istio objects the controller applies to the GitSource's own namespace
// (controller mode; docs/controller.md, "GitSource"). Each team keeps its
// own: a manifest that names another namespace rejects the whole commit,
// and the objects a GitSource applied are only ever retired or deleted by
// that GitSource.
//
// GitSources are checked by the API server alone (they are never loaded
// from Git or run standalone), so their rules are CEL and not the Pattern
// markers rollout/validation mirrors.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gs,categories=sluice
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Commit",type=string,JSONPath=`.status.lastAppliedCommit`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GitSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GitSourceSpec `json:"spec"`
	// +optional
	Status GitSourceStatus `json:"status,omitempty"`
}

// GitSourceList is a list of GitSources.
//
// +kubebuilder:object:root=true
type GitSourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitSource `json:"items"`
}

// GitSourceSpec says what to follow and how.
type GitSourceSpec struct {
	// URL of the repository: https://, http://, ssh:// or file:// (the
	// last for tests and local mirrors on the controller's disk).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh|file)://')",message="url must start with https://, http://, ssh:// or file://"
	URL string `json:"url"`
	// Ref names what to follow: exactly one of branch, tag and commit.
	Ref GitRef `json:"ref"`
	// Path inside the repository to read manifests from; empty is the
	// whole repository. It may name a single file.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.contains('..')",message="path must be relative to the repository root and must not contain '..'"
	Path string `json:"path,omitempty"`
	// Interval between polls; default 1m, at least 10s. A push webhook
	// syncs at once in between.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="interval must be at least 10s"
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Timeout bounds each fetch and each write-back push; default 60s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeout must be positive"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// SecretRef names a Secret in the GitSource's namespace holding the
	// credentials, under these keys (all optional; use the HTTP ones with
	// http(s) URLs and the SSH ones with ssh URLs):
	//
	//   - username, password: HTTP basic authentication;
	//   - token: an access token sent as the basic-auth password, user
	//     "git" unless username is set (GitHub, GitLab, Gitea, Bitbucket);
	//   - bearerToken: sent as "Authorization: Bearer";
	//   - ca.crt: PEM certificates added to the system pool for HTTPS;
	//   - identity: a PEM SSH private key, identity.passphrase its
	//     passphrase;
	//   - known_hosts: the server's host keys (required for ssh URLs);
	//   - the key named by webhookSecretKey: the push webhook's secret.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// WebhookSecretKey is the key of the SecretRef Secret that holds the
	// push webhook's secret (HMAC key for GitHub and Gitea, token for
	// GitLab). Unset, the webhook of this GitSource answers 404 and only
	// the poll finds new commits.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="must be a Secret key: letters, digits, '-', '_', '.'"
	WebhookSecretKey string `json:"webhookSecretKey,omitempty"`
	// WriteBack names the author of the revert commits pushed after an
	// automatic rollback of a Rollout with rollback.gitRevert (needs a
	// branch, and credentials that may push).
	// +optional
	WriteBack *GitWriteBack `json:"writeBack,omitempty"`
	// Suspend stops syncing: nothing is fetched or applied, and what was
	// applied stays as it is.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// GitRef is exactly one of a branch, a tag and a commit.
//
// +kubebuilder:validation:XValidation:rule="(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.commit) ? 1 : 0) == 1",message="exactly one of branch, tag and commit must be set"
type GitRef struct {
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Branch string `json:"branch,omitempty"`
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Tag string `json:"tag,omitempty"`
	// Commit is a full 40-character SHA, fetched once and never changed.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9a-f]{40}$')",message="must be a full 40-character lowercase SHA"
	Commit string `json:"commit,omitempty"`
}

// LocalObjectReference names an object in the referrer's namespace.
type LocalObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GitWriteBack names the author of revert commits.
type GitWriteBack struct {
	// +optional
	AuthorName string `json:"authorName,omitempty"`
	// +optional
	AuthorEmail string `json:"authorEmail,omitempty"`
}

// The GitSource's condition and its reasons. Ready is the only condition:
// True once the commit the ref names is applied, False with one of the
// negative reasons while it is not, Unknown before the first sync and
// while suspended.
const (
	GitSourceReady = "Ready"

	// GitSourceSynced: the ref's commit is applied (Ready=True).
	GitSourceSynced = "Synced"
	// GitSourceProgressing: not synced yet (Ready=Unknown).
	GitSourceProgressing = "Progressing"
	// GitSourceSuspended: spec.suspend is set (Ready=Unknown).
	GitSourceSuspended = "Suspended"
	// GitSourceInvalidSource: the spec or the Secret cannot make a source
	// (a missing Secret or key, SSH without known_hosts, ...).
	GitSourceInvalidSource = "InvalidSource"
	// GitSourceAuthFailed: the remote refused the credentials, or the SSH
	// host key is not trusted.
	GitSourceAuthFailed = "AuthFailed"
	// GitSourceFetchFailed: the remote is unreachable, or the repository
	// or ref does not exist; retried at the next poll.
	GitSourceFetchFailed = "FetchFailed"
	// GitSourceCommitRejected: the commit has invalid manifests (status
	// lists them as problems); the last good commit stays in force.
	GitSourceCommitRejected = "CommitRejected"
	// GitSourceConflict: an object of the commit is applied by another
	// source; it is left to that source.
	GitSourceConflict = "Conflict"
	// GitSourceApplyFailed: the API server refused part of the commit;
	// retried with a backoff.
	GitSourceApplyFailed = "ApplyFailed"
)

// MaxGitSourceProblems bounds status.problems; status.problemCount has
// the full count.
const MaxGitSourceProblems = 20

// GitSourceStatus is what the controller last did with the source.
type GitSourceStatus struct {
	// ObservedGeneration is the generation of the spec this status is
	// about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions hold Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastAppliedCommit is the commit in force in the cluster.
	// +optional
	LastAppliedCommit string `json:"lastAppliedCommit,omitempty"`
	// LastAttemptedCommit is the commit the ref named at the last fetch;
	// it differs from lastAppliedCommit while that commit is rejected or
	// not yet applied.
	// +optional
	LastAttemptedCommit string `json:"lastAttemptedCommit,omitempty"`
	// LastAttemptMessage says why lastAttemptedCommit is not in force;
	// empty when it is.
	// +optional
	LastAttemptMessage string `json:"lastAttemptMessage,omitempty"`
	// LastSyncTime is the time of the last successful fetch.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// Problems of the rejected lastAttemptedCommit, at most 20, in file
	// and line order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Problems []GitSourceProblem `json:"problems,omitempty"`
	// ProblemCount is the number of problems, also those not listed.
	// +optional
	ProblemCount int32 `json:"problemCount,omitempty"`
}

// GitSourceProblem is one thing wrong with a rejected commit.
type GitSourceProblem struct {
	File string `json:"file"`
	Line int32  `json:"line"`
	// Field is the path of the offending field, e.g. metadata.namespace.
	// +optional
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &GitSource{}, &GitSourceList{})
		return nil
	})
}
