package engine

import (
	"fmt"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// applyCommands applies each new manual command once and records the result
// in status.lastCommand, which is also the audit trail of who did what.
func (s *stepper) applyCommands() {
	for _, c := range s.in.Observations.Commands {
		if lc := s.st.LastCommand; c.ID != "" && lc != nil && lc.ID == c.ID {
			continue
		}
		result := s.command(c)
		s.st.LastCommand = &v1alpha1.CommandRecord{ID: c.ID, Kind: c.Kind, By: c.By, At: *mt(s.now), Result: result}
		by := c.By
		if by == "" {
			by = "someone"
		}
		s.event(EventNormal, "Command"+string(c.Kind), "%s ran %s: %s", by, c.Kind, result)
	}
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
		st.Analysis = nil
		st.CurrentStepIndex = nil
		st.StepStartedAt, st.StepAcknowledgedAt = nil, nil
		st.Traffic.Rejection, st.Traffic.RejectedVersion = "", ""
		st.PromoteFull = false
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
		st.Pause = nil
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
	st.Pause = nil
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
	s.stopRuns(func(r *v1alpha1.AnalysisRunStatus) bool { return r.Name == s.stepRunName(i) }, "step skipped by promote")
	s.enter(i + 1)
	return fmt.Sprintf("skipped step %d (%s)", i+1, s.stepLabel(i))
}
