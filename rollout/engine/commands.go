package engine

import (
	"fmt"
	"slices"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// applyCommands applies each new manual command once and records the result
// in status.lastCommand, which is also the audit trail of who did what.
// The IDs of the last MaxRecentCommands commands are kept, so a command
// redelivered after others (a stale informer, a replayed request) is still
// recognised.
func (s *stepper) applyCommands() {
	for _, c := range s.in.Observations.Commands {
		if s.commandApplied(c.ID) {
			continue
		}
		result := s.command(c)
		s.st.LastCommand = &v1alpha1.CommandRecord{ID: c.ID, Kind: c.Kind, By: c.By, At: *mt(s.now), Result: result}
		if c.ID != "" {
			ids := append(s.st.RecentCommandIDs, c.ID)
			s.st.RecentCommandIDs = slices.Clone(ids[max(0, len(ids)-v1alpha1.MaxRecentCommands):])
		}
		by := c.By
		if by == "" {
			by = "someone"
		}
		s.event(EventNormal, "Command"+string(c.Kind), "%s ran %s: %s", by, c.Kind, result)
	}
}

// commandApplied reports whether a command with this ID was applied
// already. A command without an ID is always new.
func (s *stepper) commandApplied(id string) bool {
	if id == "" {
		return false
	}
	if lc := s.st.LastCommand; lc != nil && lc.ID == id {
		return true
	}
	return slices.Contains(s.st.RecentCommandIDs, id)
}

func (s *stepper) command(c Command) string {
	st := &s.st
	if st.CanaryRevision == "" {
		return "refused: no rollout in progress"
	}
	switch c.Kind {
	case v1alpha1.CommandAbort:
		if st.Abort != nil {
			return "refused: already aborted"
		}
		by := c.By
		if by == "" {
			by = "a user"
		}
		s.abort(v1alpha1.ReasonAbortedByUser, "aborted by "+by, false)
		return "aborted: 100% to stable"
	case v1alpha1.CommandRetry:
		if st.Abort == nil {
			return "refused: the rollout is not aborted"
		}
		st.Abort = nil
		st.Attempt++
		s.cancelRevert()
		s.restart()
		s.event(EventNormal, v1alpha1.ReasonRetried, "retrying revision %s from step 1 (attempt %d)", st.CanaryRevision, st.Attempt+1)
		return "restarting from step 1"
	}
	if st.Abort != nil {
		return "refused: the rollout is aborted; use retry"
	}
	switch c.Kind {
	case v1alpha1.CommandPause:
		if st.Pause != nil {
			return "refused: already paused (" + st.Pause.Reason + ")"
		}
		by := c.By
		if by == "" {
			by = "a user"
		}
		st.Pause = &v1alpha1.PauseStatus{Reason: v1alpha1.ReasonPausedByUser, Message: "paused by " + by + "; resume to continue", Since: *mt(s.now)}
		return "paused"
	case v1alpha1.CommandResume:
		if st.Pause == nil {
			return "refused: not paused (use promote to continue past a pause step)"
		}
		if st.Pause.Reason == v1alpha1.ReasonPausedBySpec {
			return "refused: paused by spec.paused; set it to false"
		}
		// Runs that ended without success are measured again whatever
		// the pause says now: a NACK may have paused over an Inconclusive
		// run, and that run would otherwise hold the step forever.
		s.unpause()
		if s.remeasure() {
			return "resumed: measuring again with new analysis runs"
		}
		return "resumed"
	case v1alpha1.CommandPromote, v1alpha1.CommandPromoteFull:
		return s.promoteCommand(c.Kind == v1alpha1.CommandPromoteFull)
	}
	return fmt.Sprintf("refused: unknown command %q", c.Kind)
}

// promoteCommand skips the current step (or all of them with full), and
// clears a pause. A closed deployment window refuses it: windows exist to
// stop changes, manual ones included.
func (s *stepper) promoteCommand(full bool) string {
	st := &s.st
	if w := s.in.Observations.Window; w.Closed {
		return "refused: deployment window closed (" + w.Reason + ")"
	}
	if st.Pause != nil && st.Pause.Reason == v1alpha1.ReasonPausedBySpec {
		return "refused: paused by spec.paused; set it to false"
	}
	s.unpause()
	n := len(s.steps)
	if full {
		st.PromoteFull = true
		s.stopRuns(func(r *v1alpha1.AnalysisRunStatus) bool { return r.Kind != v1alpha1.AnalysisBackgroundKind }, "promoted to 100% by a user")
		if st.CurrentStepIndex == nil || int(*st.CurrentStepIndex) < n {
			s.enter(n)
		}
		return "promoting to 100%"
	}
	if st.CurrentStepIndex == nil {
		return "resumed: starting at step 1"
	}
	i := int(*st.CurrentStepIndex)
	if i >= n {
		return "refused: already promoting to 100%"
	}
	if r := s.stepRun(i); r != nil {
		name := r.Name
		s.stopRuns(func(r *v1alpha1.AnalysisRunStatus) bool { return r.Name == name }, "step skipped by promote")
	}
	s.enter(i + 1)
	return fmt.Sprintf("skipped step %d (%s)", i+1, s.stepLabel(i))
}

// unpause clears a pause. A step still waiting for the data plane gets its
// progress deadline afresh: time spent paused is not the data plane's fault.
func (s *stepper) unpause() {
	st := &s.st
	st.Pause = nil
	if st.CurrentStepIndex != nil && st.StepAcknowledgedAt == nil {
		st.StepStartedAt = mt(s.now)
	}
}

// remeasure retires runs that ended without success so the current step
// and the background analysis start fresh ones. It reports whether any run
// was retired.
func (s *stepper) remeasure() bool {
	retired := false
	for i := range s.st.Analysis {
		r := &s.st.Analysis[i]
		if r.Terminated || !r.Phase.Completed() || r.Phase == v1alpha1.AnalysisSuccessful {
			continue
		}
		r.Terminated = true
		r.Message += " (superseded: measuring again after resume)"
		retired = true
	}
	return retired
}
