package clusterapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// A history whose Events lost a step (folded into a series, or expired)
// still shows what the status records: the step in force, each analysis
// run's start and end, the abort, the last command. What an Event already
// tells is not told twice.
func TestHistoryFromStatus(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: t0.Add(d)} }
	ev := func(d time.Duration, typ, reason, msg string) rolloutapi.Event {
		return rolloutapi.Event{Time: t0.Add(d), Type: typ, Reason: reason, Message: msg}
	}
	st := &v1alpha1.RolloutStatus{
		CanaryRevision: "6f9c", StableRevision: "5d2a",
		CurrentStepIndex: ptr.To[int32](2), StepCount: 5, StepDisplay: "3/6",
		// A new plan moved the step's start after its Event.
		StepStartedAt: at(5 * time.Minute),
		Analysis: []v1alpha1.AnalysisRunStatus{
			{Name: "reviews-6f9c-1-s1", Kind: v1alpha1.AnalysisStepKind, Phase: v1alpha1.AnalysisSuccessful, StartedAt: at(time.Minute), CompletedAt: at(2 * time.Minute)},
			{Name: "reviews-6f9c-1-bg", Kind: v1alpha1.AnalysisBackgroundKind, Phase: v1alpha1.AnalysisRunning, StartedAt: at(30 * time.Second)},
		},
		LastCommand: &v1alpha1.CommandRecord{ID: "c1", Kind: v1alpha1.CommandPromote, By: "alice", At: metav1.Time{Time: t0.Add(3 * time.Minute)}, Result: "promoted: step 3/6"},
	}
	evs := []rolloutapi.Event{
		ev(0, "Normal", v1alpha1.ReasonNewRevision, "new revision 6f9c: rolling out from stable 5d2a in 5 steps"),
		// The series of StepAdvanced kept only the first note.
		ev(10*time.Second, "Normal", v1alpha1.ReasonStepAdvanced, "step 1/6: setWeight 10 (2 times since 2025-05-01T12:00:10Z)"),
		ev(time.Minute, "Normal", "AnalysisStarted", "step analysis run reviews-6f9c-1-s1 started"),
		ev(3*time.Minute, "Normal", "CommandPromote", "alice ran Promote: promoted: step 3/6"),
	}
	got := withStatus(slices.Clone(evs), st)
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Time.Sub(t0).String()+" "+e.Reason+" "+e.Message)
	}
	want := []string{
		"0s NewRevisionDetected new revision 6f9c: rolling out from stable 5d2a in 5 steps",
		"10s StepAdvanced step 1/6: setWeight 10 (2 times since 2025-05-01T12:00:10Z)",
		"30s AnalysisStarted background analysis run reviews-6f9c-1-bg started",
		"1m0s AnalysisStarted step analysis run reviews-6f9c-1-s1 started",
		"2m0s AnalysisSuccessful analysis run reviews-6f9c-1-s1 successful",
		"3m0s CommandPromote alice ran Promote: promoted: step 3/6",
		"5m0s StepAdvanced step 3/6 of revision 6f9c",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("history:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// The step's own Event, before the step's start moved: told once.
	evs = append(evs, ev(4*time.Minute, "Normal", v1alpha1.ReasonStepAdvanced, "step 3/6: setWeight 50"))
	got = withStatus(slices.Clone(evs), st)
	n := 0
	for _, e := range got {
		if strings.HasPrefix(e.Message, "step 3/6") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("step 3/6 told %d times, want once: %v", n, got)
	}
}
