package rolloutapi

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// StepState is where one step of a rollout stands.
type StepState string

const (
	StepDone    StepState = "done"
	StepCurrent StepState = "current"
	// StepFailed is the current step of an aborted rollout.
	StepFailed StepState = "failed"
	StepNext   StepState = "next"
)

// StepTime is one step of the current rollout with its times.
type StepTime struct {
	// Index counts from 0, as status.currentStepIndex does.
	Index int
	Label string
	State StepState
	// Started is when the step was entered; Ended, for a finished step,
	// when the next one was. Either is nil when the history kept does not
	// reach back to it.
	Started, Ended *time.Time
	// Acknowledged is when the data plane acknowledged the current step's
	// plan; pauses and analysis windows count from it.
	Acknowledged *time.Time
	// PauseEnds is when the current step's timed pause ends, once it
	// runs (acknowledged, not held by a pause of another kind).
	PauseEnds *time.Time
}

// Duration is how long a finished step took, or zero when not known.
func (s StepTime) Duration() time.Duration {
	if s.Started == nil || s.Ended == nil {
		return 0
	}
	return s.Ended.Sub(*s.Started)
}

// Reasons of the Events that start a rollout from step 1.
var restartReasons = map[string]bool{
	v1alpha1.ReasonNewRevision: true,
	v1alpha1.ReasonRetried:     true,
	"StepsChanged":             true,
}

// Timeline lays out the steps of r's current rollout (none without one)
// with when each began and ended, from its history (oldest first, as
// History returns it): the engine's StepAdvanced events ("step n/m: ...")
// since the rollout last started.
func Timeline(r Rollout, history []Event) []StepTime {
	st := r.Status
	if st.CanaryRevision == "" || len(r.Steps) == 0 {
		return nil
	}
	cur := -1
	if st.CurrentStepIndex != nil {
		cur = int(*st.CurrentStepIndex)
	}
	entered := stepEntries(history)
	out := make([]StepTime, len(r.Steps))
	for i, label := range r.Steps {
		s := StepTime{Index: i, Label: label, State: StepNext}
		if t, ok := entered[i]; ok && i <= cur {
			s.Started = &t
		}
		switch {
		case i < cur:
			s.State = StepDone
		case i == cur && st.Abort != nil:
			s.State = StepFailed
		case i == cur:
			s.State = StepCurrent
		}
		out[i] = s
	}
	// A finished step ended when the next one recorded began.
	for i := range out {
		if out[i].State != StepDone {
			continue
		}
		for j := i + 1; j <= cur && j < len(out); j++ {
			if out[j].Started != nil {
				out[i].Ended = out[j].Started
				break
			}
		}
	}
	if cur >= 0 && cur < len(out) {
		c := &out[cur]
		if c.Started == nil && st.StepStartedAt != nil {
			t := st.StepStartedAt.Time
			c.Started = &t
		}
		if st.StepAcknowledgedAt != nil {
			t := st.StepAcknowledgedAt.Time
			c.Acknowledged = &t
			if d, ok := PauseDuration(c.Label); ok && st.Pause == nil && st.Abort == nil {
				end := t.Add(d)
				c.PauseEnds = &end
			}
		}
	}
	return out
}

// stepEntries maps each step index to when it was last entered since the
// rollout last started from step 1.
func stepEntries(history []Event) map[int]time.Time {
	from := 0
	for i, e := range history {
		if restartReasons[e.Reason] {
			from = i
		}
	}
	out := map[int]time.Time{}
	for _, e := range history[from:] {
		if e.Reason != v1alpha1.ReasonStepAdvanced {
			continue
		}
		var n, m int
		if _, err := fmt.Sscanf(e.Message, "step %d/%d:", &n, &m); err == nil && n >= 1 {
			out[n-1] = e.Time
		}
	}
	return out
}

// PauseDuration is the duration of a timed pause step, from its label
// ("pause 1m30s", engine.StepLabels); false for any other step, "pause
// until promote" included.
func PauseDuration(label string) (time.Duration, bool) {
	s, ok := strings.CutPrefix(label, "pause ")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0
}
