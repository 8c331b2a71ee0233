// Package engine is Sluice's rollout state machine. It is deterministic and
// free of I/O, goroutines and clocks, in the manner of etcd's raft RawNode:
// the caller passes in a Rollout (spec and last status), what it has observed
// of the world since, and the time; Step returns the new status, the traffic
// plan that should be in force, and what to do next.
//
// Callers must handle an Output in this order:
//
//  1. Persist Output.Status (Kubernetes status subresource, or the standalone
//     store) before anything else, so a crash never acts on unrecorded state.
//  2. Publish Output.Plan to the data plane (VirtualService, xDS snapshot).
//     Republishing an identical plan is harmless: its version is its hash.
//  3. Apply Output.Scale: the replicas each listed revision should run;
//     revisions not listed should run none.
//  4. Perform Output.Actions in order (stop analysis runs before starting
//     new ones, then Git write-back), and emit Output.Events.
//  5. Call Step again with fresh observations after Output.RequeueAfter, or
//     earlier when something is observed (an ACK, an analysis result, a
//     command, a new spec).
//
// Analysis runs named in Output.Status with phase Running must exist; after
// a restart an adapter recreates them from status (StartAnalysis is
// idempotent by run name), so an action lost in a crash is never lost for
// good.
package engine

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Input is everything one Step looks at.
type Input struct {
	// Rollout is read, never modified. Its Status is the last persisted one.
	Rollout *v1alpha1.Rollout
	// Observations made since the last Step.
	Observations Observations
	// Now is the time of this step; the engine never reads a clock.
	Now time.Time
}

// Observations are what adapters saw of the world. Zero values mean "nothing
// new": no acknowledgement, no command, an open window.
type Observations struct {
	// DataPlane is the state of the last published plan version. Ignored
	// with the replicas router, whose pods are its data plane
	// (replicas.go): adapters need not ask.
	DataPlane DataPlane
	// Workload readiness (controller mode). Nil means unknown, which holds
	// traffic steps until the canary is known to be ready. Ignored when the
	// Rollout has no replicas (standalone backends are always ready).
	Workload *Workload
	// Analysis reports the current state of analysis runs by name.
	Analysis []AnalysisObservation
	// GitRevert is how the last write-back attempt for status.gitRevert
	// ended, if one ended since the last Step.
	GitRevert *RevertResult
	// Commands issued by people, in order. Each ID is applied once: a
	// command whose ID is in status.lastCommand or status.recentCommandIDs
	// is skipped.
	Commands []Command
	// Window is the deployment-window state at Now.
	Window Window
	// Git is the provenance of the spec, copied into status.
	Git *v1alpha1.GitProvenance
}

// AckState is the data plane's answer to a plan version.
type AckState string

const (
	// AckPending: not every proxy has answered yet.
	AckPending AckState = ""
	// AckAcknowledged: every connected proxy ACKed (or, with none connected,
	// the VirtualService write was accepted).
	AckAcknowledged AckState = "Acknowledged"
	// AckRejected: a proxy NACKed the version.
	AckRejected AckState = "Rejected"
)

// DataPlane is what the data plane said about one plan version.
type DataPlane struct {
	Version string
	State   AckState
	// Message is the proxy's error text for a rejection.
	Message string
	// Subscribed and Acked count the xDS nodes that receive the plan and
	// those that applied this version; zero without xDS clients.
	Subscribed, Acked int
	// Silent are the pending nodes that have left the version unanswered
	// (neither ACK nor NACK), oldest first, with when it was sent to them.
	// The engine judges them against spec.dataPlane.ackDeadline (stale.go).
	Silent []SilentNode
}

// SilentNode is a proxy that has not answered a plan version sent to it.
type SilentNode struct {
	// Name is the node id, the proxy's own words: bounded before shown.
	Name  string
	Since time.Time
}

// Workload is the readiness of the revisions' replicas.
type Workload struct {
	StableAvailable int32
	CanaryAvailable int32
	// ExtraAvailable is the available replicas of each extra revision,
	// by revision.
	ExtraAvailable map[string]int32
}

// AnalysisObservation is the current state of one analysis run.
type AnalysisObservation struct {
	Name    string
	Phase   v1alpha1.AnalysisPhase
	Message string
	Metrics []v1alpha1.MetricSummary
}

// Command is a manual command.
type Command struct {
	// ID makes the command idempotent across restarts.
	ID   string
	Kind v1alpha1.CommandKind
	By   string
}

// Window is the state of the deployment windows.
type Window struct {
	// Closed holds advancement. Aborts are never held.
	Closed bool
	// Reason names the window, e.g. `deny "0 22 * * 5" for 60h`.
	Reason string
	// NextChange is when the state flips; zero if never.
	NextChange time.Time
}

// Output is everything one Step decided.
type Output struct {
	Status v1alpha1.RolloutStatus
	// Plan is the traffic that should be in force. It is sealed: Version is
	// the content hash.
	Plan plan.Plan
	// Scale lists the desired replicas of each revision that should run
	// (controller mode only; empty in standalone mode).
	Scale []Scale
	// Actions are edge-triggered things to do, in order.
	Actions []Action
	// Events describe what happened in words, for Kubernetes Events, logs
	// and notifications.
	Events []Event
	// RequeueAfter is when to call Step again if nothing is observed
	// earlier; zero means only on the next observation.
	RequeueAfter time.Duration
}

// Scale is the desired replica count of one revision.
type Scale struct {
	Revision string
	Replicas int32
}

// ActionKind names an action.
type ActionKind string

const (
	// ActionStartAnalysis starts the analysis run Run.
	ActionStartAnalysis ActionKind = "StartAnalysis"
	// ActionStopAnalysis stops the analysis run Run.
	ActionStopAnalysis ActionKind = "StopAnalysis"
	// ActionGitRevert asks for a commit setting the Rollout back to the
	// stable revision. The request is also recorded in status.gitRevert:
	// the engine asks again after a failure (Observations.GitRevert), with
	// backoff, and an adapter that finds an attempt recorded but not
	// running (RevertOutstanding, after a restart) reports it interrupted,
	// which asks again. Attempts must be idempotent (a revert that already
	// landed answers "unchanged"), so a crash between the push and the
	// next status write costs nothing.
	ActionGitRevert ActionKind = "GitRevert"
)

// Action is one thing for an adapter to do.
type Action struct {
	Kind ActionKind
	// Run describes the analysis run for Start/StopAnalysis.
	Run *AnalysisRun
	// Revert describes the Git write-back for GitRevert.
	Revert *GitRevert
}

// AnalysisRun is what an adapter needs to start a run.
type AnalysisRun struct {
	Name      string
	Kind      v1alpha1.AnalysisKind
	Templates []v1alpha1.TemplateRef
	// Args are the step's arguments followed by the built-in ones
	// (rollout, namespace, service, host, stableRevision, canaryRevision).
	Args []v1alpha1.Argument
}

// GitRevert asks gitsync to set the Rollout in Git back to StableRevision.
type GitRevert struct {
	Rollout        string
	Namespace      string
	StableRevision string
	StableBackend  *v1alpha1.Backend
	FailedRevision string
	Reason         string
	Message        string
	// Attempt numbers the attempt (status.gitRevert.attempts), for the
	// answer.
	Attempt int32
}

// RevertResult is how one Git write-back attempt ended.
type RevertResult struct {
	// FailedRevision and Attempt (GitRevert.Attempt) name the attempt
	// answered; an answer to another (an earlier attempt, a superseded
	// request) is ignored.
	FailedRevision string
	Attempt        int32
	// Err says why the attempt failed; empty on success.
	Err string
	// Outcome and Commit describe a success (gitsync.RevertResult).
	Outcome string
	Commit  string
}

// EventType is Normal or Warning, as for Kubernetes Events.
type EventType string

const (
	EventNormal  EventType = "Normal"
	EventWarning EventType = "Warning"
)

// Event is something that happened, in words.
type Event struct {
	Type    EventType
	Reason  string
	Message string
}

// Step runs the state machine once. It returns an error only for a spec the
// engine cannot execute (which validation should have rejected); the status
// is then returned unchanged so nothing is lost.
func Step(in Input) (Output, error) {
	s, err := newStepper(in)
	if err != nil {
		return Output{Status: *in.Rollout.Status.DeepCopy()}, err
	}
	s.migrateTraffic()
	s.observeRevert()
	s.observeSpec()
	s.applyCommands()
	// A command (retry, resume) must not get past spec.paused.
	s.syncSpecPause()
	s.observeAnalysis()
	s.observeDataPlane()
	s.checkDeadline()
	s.expireExtras()
	s.advance()
	return s.finish(), nil
}

// mt is t as a metav1.Time keeps it: whole seconds, so that the status in
// memory is the status read back after a restart and both decide alike.
// Times that must be exact are v1alpha1.Timestamps.
func mt(t time.Time) *metav1.Time {
	m := metav1.NewTime(t.Truncate(time.Second))
	return &m
}
