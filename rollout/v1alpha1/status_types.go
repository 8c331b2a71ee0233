package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Phase summarises a Rollout for people and scripts.
// +kubebuilder:validation:Enum=Healthy;Progressing;Paused;Degraded
type Phase string

const (
	// PhaseHealthy: no rollout in progress; the stable revision serves 100%.
	PhaseHealthy Phase = "Healthy"
	// PhaseProgressing: a rollout is moving through its steps.
	PhaseProgressing Phase = "Progressing"
	// PhasePaused: waiting for a person (promote, resume) or for a window.
	PhasePaused Phase = "Paused"
	// PhaseDegraded: the rollout was aborted (stable serves 100% and the
	// canary waits for retry or a new revision), or the data plane rejected
	// the plan in force.
	PhaseDegraded Phase = "Degraded"
)

// Condition types owned by the engine. Ready is the summary: True when the
// stable revision serves everything with no rollout in progress.
const (
	// ConditionProgressing is True while a rollout moves; False with the
	// reason it stopped (completed, aborted, deadline).
	ConditionProgressing = "Progressing"
	// ConditionPaused is True while waiting for a person or a window.
	ConditionPaused = "Paused"
	// ConditionAborted is True after an abort until retry or a new revision.
	ConditionAborted = "Aborted"
	// ConditionReady is True when no rollout is in progress.
	ConditionReady = "Ready"
)

// Condition reasons, written for people reading `kubectl describe`.
const (
	ReasonNewRevision     = "NewRevisionDetected"
	ReasonStepAdvanced    = "StepAdvanced"
	ReasonWaitingForAck   = "WaitingForDataPlane"
	ReasonWaitingForReady = "WaitingForCanaryReady"
	ReasonPausedByStep    = "PausedByStep"
	ReasonPausedByUser    = "PausedByUser"
	ReasonPausedBySpec    = "PausedBySpec"
	ReasonWindowClosed    = "DeploymentWindowClosed"
	ReasonInconclusive    = "AnalysisInconclusive"
	ReasonAnalysisFailed  = "AnalysisFailed"
	ReasonNack            = "DataPlaneRejectedPlan"
	ReasonDeadline        = "ProgressDeadlineExceeded"
	ReasonAbortedByUser   = "AbortedByUser"
	ReasonPromoted        = "RolloutPromoted"
	// ReasonRevisionEnded: an extra revision's duration ran out.
	ReasonRevisionEnded      = "RevisionEnded"
	ReasonRolledBackToStable = "SpecSetBackToStable"
	ReasonRetried            = "RetriedByUser"
	ReasonStable             = "StableServing"
	ReasonSuperseded         = "SupersededByNewerRevision"
	// Events of the Git write-back after an automatic abort.
	ReasonGitReverted         = "GitReverted"
	ReasonGitRevertFailed     = "GitRevertFailed"
	ReasonGitRevertSuperseded = "GitRevertSuperseded"
)

// RolloutStatus is the observed state of a Rollout. It holds everything the
// engine needs to resume exactly where it stopped.
type RolloutStatus struct {
	// ObservedGeneration is the spec generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Message explains the phase in words.
	// +optional
	Message string `json:"message,omitempty"`

	// StableRevision serves by default.
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`
	// StableBackend is the stable revision's backend (standalone mode),
	// kept so its endpoints stay known while the spec names the new one.
	// +optional
	StableBackend *Backend `json:"stableBackend,omitempty"`
	// CanaryRevision is the revision being rolled out, empty when none.
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`
	// CanaryBackend is the canary revision's backend (standalone mode), so
	// a restarted runner serves its endpoints before Git is read again.
	// +optional
	CanaryBackend *Backend `json:"canaryBackend,omitempty"`
	// ExtraRevisions are the extra revisions the current step runs (or
	// ran until their duration ended).
	// +optional
	// +listType=map
	// +listMapKey=name
	ExtraRevisions []ExtraRevisionStatus `json:"extraRevisions,omitempty"`

	// Attempt counts retries of the current canary revision.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// Starts counts rollout starts and retries over the Rollout's life; it
	// names analysis runs, so no run name is ever used twice.
	// +optional
	Starts int32 `json:"starts,omitempty"`
	// StepsHash identifies the steps the current rollout executes; when the
	// steps are edited mid-rollout it starts again from step 1.
	// +optional
	StepsHash string `json:"stepsHash,omitempty"`
	// CurrentStepIndex is the step being executed; absent when no rollout
	// has started. Equal to the number of steps while promoting.
	// +optional
	CurrentStepIndex *int32 `json:"currentStepIndex,omitempty"`
	// StepCount is the number of steps of the current rollout.
	// +optional
	StepCount int32 `json:"stepCount,omitempty"`
	// StepDisplay is "index/count" for printer columns.
	// +optional
	StepDisplay string `json:"stepDisplay,omitempty"`
	// StepStartedAt is when the current step began, or last published a
	// new plan; the progress deadline counts from it.
	// +optional
	StepStartedAt *metav1.Time `json:"stepStartedAt,omitempty"`
	// StepAcknowledgedAt is when the data plane acknowledged the current
	// step's traffic plan; pauses and analysis windows start from it. It
	// keeps microseconds: a pause timed from a whole second would run
	// short by up to a second after the status is read back.
	// +optional
	StepAcknowledgedAt *Timestamp `json:"stepAcknowledgedAt,omitempty"`
	// Paused records why the rollout waits, if it does.
	// +optional
	Pause *PauseStatus `json:"pause,omitempty"`
	// Abort records why the rollout was aborted, if it was.
	// +optional
	Abort *AbortStatus `json:"abort,omitempty"`
	// Promotion records an explicit promote --full.
	// +optional
	PromoteFull bool `json:"promoteFull,omitempty"`

	// Traffic is the current traffic plan in brief.
	// +optional
	Traffic TrafficStatus `json:"traffic,omitempty"`

	// StableReplicas are the stable revision's pods (controller mode).
	// +optional
	StableReplicas *RevisionReplicas `json:"stableReplicas,omitempty"`
	// CanaryReplicas are the canary revision's pods while a rollout is in
	// progress (controller mode).
	// +optional
	CanaryReplicas *RevisionReplicas `json:"canaryReplicas,omitempty"`

	// Analysis lists the analysis runs of the current rollout.
	// +optional
	// +listType=map
	// +listMapKey=name
	Analysis []AnalysisRunStatus `json:"analysis,omitempty"`

	// LastRollout is how the last finished rollout ended, kept after the
	// canary is gone: an abort followed by a Git revert returns to Healthy
	// within moments, and this is where it stays visible.
	// +optional
	LastRollout *RolloutOutcome `json:"lastRollout,omitempty"`

	// GitRevert is the write-back of the last automatic rollback: recorded
	// with the abort, so a crash before (or during) the push never loses
	// it, and retried with backoff until Git names the stable revision.
	// +optional
	GitRevert *GitRevertStatus `json:"gitRevert,omitempty"`

	// ScaleDown records a previous revision kept running until a deadline.
	// +optional
	ScaleDown *ScaleDownStatus `json:"scaleDown,omitempty"`

	// PendingNotifications are notifications of this Rollout's Events that
	// are not delivered yet (controller mode). Each is written in the same
	// status write as the step whose Event it reports, sent once that write
	// is in, and removed once every target has it or gave up on it: a
	// controller that stops in between, or a new leader, sends it again
	// under the same ID, which receivers use to drop repeats. Oldest first,
	// at most MaxPendingNotifications.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=64
	PendingNotifications []PendingNotification `json:"pendingNotifications,omitempty"`

	// Git records the commit the spec came from.
	// +optional
	Git *GitProvenance `json:"git,omitempty"`

	// GitSync is the state of the Git source the Rollout is applied from:
	// the commit its ref names, the commit in force, and a commit rejected
	// since (GitSyncStatus). Absent for a Rollout no Git source applied.
	// +optional
	GitSync *GitSyncStatus `json:"gitSync,omitempty"`

	// LastCommand is the last manual command applied; commands with the
	// same ID are not applied twice.
	// +optional
	LastCommand *CommandRecord `json:"lastCommand,omitempty"`
	// RecentCommandIDs are the IDs of the last applied commands, oldest
	// first (at most MaxRecentCommands). A command whose ID is listed is
	// skipped, so a redelivered command is never applied twice, whatever
	// arrived in between.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	RecentCommandIDs []string `json:"recentCommandIDs,omitempty"`

	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PauseStatus says why and since when the rollout waits.
type PauseStatus struct {
	Reason string `json:"reason"`
	// Message says in words what the rollout waits for.
	// +optional
	Message string      `json:"message,omitempty"`
	Since   metav1.Time `json:"since"`
}

// AbortStatus says why the rollout was aborted.
type AbortStatus struct {
	Reason  string      `json:"reason"`
	Message string      `json:"message"`
	At      metav1.Time `json:"at"`
	// Automatic is true when Sluice aborted on its own (analysis, NACK,
	// deadline), which is when a Git revert may be requested.
	// +optional
	Automatic bool `json:"automatic,omitempty"`
	// KeepCanaryReplicas is how many pods the aborted canary keeps until
	// the data plane acknowledged the plan that sends everything to
	// stable, or scaleDownDelaySeconds passed since the abort: what the
	// plan before the abort ran it with, for proxies that still route by
	// that plan. Absent when that plan sent the canary nothing.
	// +optional
	KeepCanaryReplicas *int32 `json:"keepCanaryReplicas,omitempty"`
}

// GitRevertPhase is where a Git write-back stands.
// +kubebuilder:validation:Enum=Pending;Done
type GitRevertPhase string

const (
	// GitRevertPending: no attempt has succeeded yet; the engine asks for
	// one at once, then again with backoff after each failure.
	GitRevertPending GitRevertPhase = "Pending"
	// GitRevertDone: Git names the stable revision, or a newer push made
	// the revert unnecessary (see Outcome).
	GitRevertDone GitRevertPhase = "Done"
)

// MaxPendingNotifications bounds status.pendingNotifications, so that a
// target that stays down cannot grow the Rollout past what the API server
// stores; past it the oldest is dropped (and reported as dropped).
const MaxPendingNotifications = 64

// PendingNotification is one notification recorded with the status of the
// step that emitted its Event, with what a receiver is told.
type PendingNotification struct {
	// ID is the delivery ID sent with every attempt (X-Sluice-Delivery).
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`
	// Type is the Event's type (Normal, Warning).
	// +kubebuilder:validation:MaxLength=16
	Type string `json:"type"`
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason"`
	// Message is the Event's note, bounded and escaped as outside text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string      `json:"message,omitempty"`
	Time    metav1.Time `json:"time"`
	// Step, revisions, weights and commit are the status' at the Event.
	// +optional
	Step string `json:"step,omitempty"`
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`
	// +optional
	StableWeight int32 `json:"stableWeight,omitempty"`
	// +optional
	CanaryWeight int32 `json:"canaryWeight,omitempty"`
	// +optional
	Commit string `json:"commit,omitempty"`
}

// GitRevertStatus records the commit that sets a Rollout back to its stable
// revision in Git after an automatic abort.
type GitRevertStatus struct {
	// FailedRevision is the aborted canary; StableRevision what Git is set
	// back to.
	FailedRevision string         `json:"failedRevision"`
	StableRevision string         `json:"stableRevision"`
	Phase          GitRevertPhase `json:"phase"`
	RequestedAt    metav1.Time    `json:"requestedAt"`
	// Attempts counts the attempts asked for; Failures those that failed.
	// While Attempts exceeds Failures one is under way.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// LastAttemptAt is when the last attempt was asked for.
	// +optional
	LastAttemptAt *metav1.Time `json:"lastAttemptAt,omitempty"`
	// NextAttemptAt is when a failed write-back is tried again.
	// +optional
	NextAttemptAt *metav1.Time `json:"nextAttemptAt,omitempty"`
	// LastError is why the last attempt failed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`
	// Outcome of the successful attempt: pushed, unchanged (Git already
	// named the stable revision), superseded (someone pushed another
	// revision meanwhile) or removed (the Rollout left Git); or cancelled
	// (the aborted revision was retried before the revert landed).
	// +optional
	Outcome string `json:"outcome,omitempty"`
	// Commit is the revert commit pushed, or the head examined.
	// +optional
	Commit string `json:"commit,omitempty"`
}

// TrafficStatus is the traffic plan in brief.
type TrafficStatus struct {
	// PlanVersion is the content hash of the desired traffic plan.
	// +optional
	PlanVersion string `json:"planVersion,omitempty"`
	// AcknowledgedVersion equals PlanVersion once every proxy acknowledged
	// it; publishing a new version clears it.
	// +optional
	AcknowledgedVersion string `json:"acknowledgedVersion,omitempty"`
	// +optional
	StableWeight int32 `json:"stableWeight"`
	// +optional
	CanaryWeight int32 `json:"canaryWeight"`
	// MirrorPercent of default-route requests copied to the canary.
	// +optional
	MirrorPercent int32 `json:"mirrorPercent,omitempty"`
	// Routes are the names of the match routes to the canary.
	// +optional
	// +listType=atomic
	Routes []string `json:"routes,omitempty"`
	// RejectedVersion is the last plan version a proxy rejected. It is
	// cleared when that version, or a later one, is acknowledged.
	// +optional
	RejectedVersion string `json:"rejectedVersion,omitempty"`
	// Rejection is the data plane's error text for RejectedVersion.
	// +optional
	Rejection string `json:"rejection,omitempty"`
	// RoutedSteps is how many steps of the rollout the published plan has
	// folded in (stepCount + 1: promotion); absent when it routes to
	// stable only. It trails currentStepIndex + 1 while a gate (canary
	// readiness, the canary subset's warm-up, a closed window) holds the
	// current step's traffic back: the plan in force is then this one.
	// +optional
	RoutedSteps *int32 `json:"routedSteps,omitempty"`
	// Subsets are the subsets of the published plan and whether the data
	// plane knows them. Traffic goes to a subset only once it is
	// acknowledged.
	// +optional
	// +listType=map
	// +listMapKey=name
	Subsets []SubsetStatus `json:"subsets,omitempty"`
	// StaleNodes are the data-plane nodes (xDS proxies, gateways) silent past spec.dataPlane's deadline
	// on PlanVersion; absent when none is.
	// +optional
	StaleNodes *StaleNodesStatus `json:"staleNodes,omitempty"`
	// Replicas is the replicas router's split of the traffic in force:
	// with no router, the canary weight is the canary's share of the pods
	// behind one Service. Absent with other routers.
	// +optional
	Replicas *ReplicaSplitStatus `json:"replicas,omitempty"`
}

// RevisionReplicas are one revision's pods as the controller last saw
// them: what the status it wrote asks the revision's ReplicaSet for, and
// how many of its pods were ready (available: ready for the template's
// minReadySeconds), which is what Sluice waits for.
type RevisionReplicas struct {
	// Desired is the pods the revision is to run.
	Desired int32 `json:"desired"`
	// Ready is how many pods of the revision were available.
	Ready int32 `json:"ready"`
	// Display is "ready/desired", for printer columns.
	// +optional
	Display string `json:"display,omitempty"`
}

// ReplicaSplitStatus is how the replicas router runs a weight with pods
// (validation.ReplicaSplit): the weight the steps ask for, the pods each
// revision runs for it, and the weight that gives.
type ReplicaSplitStatus struct {
	// Weight is the canary weight the steps ask for (100 when promoting).
	Weight int32 `json:"weight"`
	// AchievedWeight is the canary's share of the pods, in percent
	// (rounded): the weight the canary really gets.
	AchievedWeight int32 `json:"achievedWeight"`
	// Canary and Stable are the pods each revision runs at this weight.
	Canary int32 `json:"canary"`
	Stable int32 `json:"stable"`
}

// MaxRecentCommands bounds status.recentCommandIDs.
const MaxRecentCommands = 32

// SubsetStatus is one subset of the published plan.
type SubsetStatus struct {
	// Name is the subset: stable, canary or an extra revision's name.
	Name string `json:"name"`
	// Revision is the revision the subset selects.
	Revision string `json:"revision"`
	// Weight is the subset's share of the default route.
	// +optional
	Weight int32 `json:"weight,omitempty"`
	// Acknowledged is true once the data plane acknowledged a plan with
	// this subset selecting this revision, and every plan published since
	// kept it.
	// +optional
	Acknowledged bool `json:"acknowledged,omitempty"`
}

// AnalysisKind says what an analysis run gates.
type AnalysisKind string

const (
	AnalysisStepKind       AnalysisKind = "Step"
	AnalysisBackgroundKind AnalysisKind = "Background"
	AnalysisPrePromotion   AnalysisKind = "PrePromotion"
	AnalysisPostPromotion  AnalysisKind = "PostPromotion"
	AnalysisDark           AnalysisKind = "Dark"
)

// AnalysisPhase is the state of an analysis run.
// +kubebuilder:validation:Enum=Pending;Running;Successful;Failed;Inconclusive;Error
type AnalysisPhase string

const (
	AnalysisPending      AnalysisPhase = "Pending"
	AnalysisRunning      AnalysisPhase = "Running"
	AnalysisSuccessful   AnalysisPhase = "Successful"
	AnalysisFailed       AnalysisPhase = "Failed"
	AnalysisInconclusive AnalysisPhase = "Inconclusive"
	AnalysisError        AnalysisPhase = "Error"
)

// Completed reports whether the phase is final.
func (p AnalysisPhase) Completed() bool {
	switch p {
	case AnalysisSuccessful, AnalysisFailed, AnalysisInconclusive, AnalysisError:
		return true
	}
	return false
}

// AnalysisRunStatus summarises one analysis run of the rollout.
type AnalysisRunStatus struct {
	// Name is unique per rollout, revision, attempt and step.
	Name string       `json:"name"`
	Kind AnalysisKind `json:"kind"`
	// StepIndex is the step that started the run, for step runs.
	// +optional
	StepIndex *int32 `json:"stepIndex,omitempty"`
	// +listType=atomic
	Templates []TemplateRef `json:"templates"`
	// +optional
	// +listType=atomic
	Args  []Argument    `json:"args,omitempty"`
	Phase AnalysisPhase `json:"phase"`
	// Terminated is true when the run was stopped before it finished (step
	// skipped, rollout aborted or promoted).
	// +optional
	Terminated bool `json:"terminated,omitempty"`
	// Message is the reason of the last non-success, in words.
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// Metrics summarise each metric's measurements.
	// +optional
	// +listType=map
	// +listMapKey=name
	Metrics []MetricSummary `json:"metrics,omitempty"`
}

// MetricSummary is the per-metric view of an analysis run.
type MetricSummary struct {
	Name  string        `json:"name"`
	Phase AnalysisPhase `json:"phase"`
	// LastValue is the last measured value as text.
	// +optional
	LastValue string `json:"lastValue,omitempty"`
	// +optional
	Successful int32 `json:"successful,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`
	// +optional
	Error int32 `json:"error,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// Outcome is how a rollout ended.
// +kubebuilder:validation:Enum=Promoted;Aborted;Superseded;RolledBack
type Outcome string

const (
	// OutcomePromoted: the revision became stable.
	OutcomePromoted Outcome = "Promoted"
	// OutcomeAborted: the rollout was aborted and the spec then named the
	// stable revision again (a Git revert, or a person).
	OutcomeAborted Outcome = "Aborted"
	// OutcomeSuperseded: a newer revision replaced it mid-rollout.
	OutcomeSuperseded Outcome = "Superseded"
	// OutcomeRolledBack: the spec named the stable revision again while the
	// rollout was running.
	OutcomeRolledBack Outcome = "RolledBack"
)

// RolloutOutcome records how a rollout of one revision ended.
type RolloutOutcome struct {
	Revision string  `json:"revision"`
	Outcome  Outcome `json:"outcome"`
	// Reason and Message say why, for an abort.
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string      `json:"message,omitempty"`
	At      metav1.Time `json:"at"`
}

// ScaleDownStatus keeps an old revision running until At.
type ScaleDownStatus struct {
	Revision string      `json:"revision"`
	At       metav1.Time `json:"at"`
	// Replicas the revision keeps until At; absent: spec.replicas. With
	// the replicas router it is the pods the revision had when the new
	// one reached full scale, since every pod it keeps takes requests.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// GitProvenance records where a spec came from.
type GitProvenance struct {
	// +optional
	Repository string `json:"repository,omitempty"`
	Commit     string `json:"commit"`
	// +optional
	Path string `json:"path,omitempty"`
	// +optional
	CommitTime *metav1.Time `json:"commitTime,omitempty"`
}

// CommandKind is a manual command.
// +kubebuilder:validation:Enum=Promote;PromoteFull;Abort;Retry;Pause;Resume
type CommandKind string

const (
	CommandPromote     CommandKind = "Promote"
	CommandPromoteFull CommandKind = "PromoteFull"
	CommandAbort       CommandKind = "Abort"
	CommandRetry       CommandKind = "Retry"
	CommandPause       CommandKind = "Pause"
	CommandResume      CommandKind = "Resume"
)

// CommandRecord is an audited manual command.
type CommandRecord struct {
	ID   string      `json:"id"`
	Kind CommandKind `json:"kind"`
	// By is who issued it.
	// +optional
	By string      `json:"by,omitempty"`
	At metav1.Time `json:"at"`
	// Result says what the command did, or why it did nothing.
	// +optional
	Result string `json:"result,omitempty"`
}

// ExtraRevisionStatus is one extra revision of a rollout.
type ExtraRevisionStatus struct {
	// Name as the step gives it.
	Name string `json:"name"`
	// Revision it runs.
	Revision string `json:"revision"`
	// Backend in standalone mode.
	// +optional
	Backend *Backend `json:"backend,omitempty"`
	// Template in controller mode.
	// +optional
	Template *RevisionTemplate `json:"template,omitempty"`
	// Since is the index of the step that started or last changed it.
	Since int32 `json:"since"`
	// Replicas in controller mode.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// Weight and match routes are in the plan; EndsAt is when a duration
	// runs out, Ended once it has (the revision then gets no traffic).
	// +optional
	EndsAt *metav1.Time `json:"endsAt,omitempty"`
	// +optional
	Ended bool `json:"ended,omitempty"`
}
