package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// abortedWithRevert is a rollout at step 1 that a NACK just aborted, with
// rollback.gitRevert set.
func abortedWithRevert(t *testing.T) *harness {
	t.Helper()
	ro := standalone("v2", canary(weight(10), weight(50)))
	ro.Spec.Rollback.GitRevert = true
	h := newHarness(t, ro)
	h.ack()
	h.nack("route app: unknown cluster")
	h.wantPhase(v1alpha1.PhaseDegraded)
	return h
}

// revertResult answers the attempt under way, unless res names another.
func revertResult(h *harness, res RevertResult) Output {
	h.t.Helper()
	if res.Attempt == 0 && h.ro.Status.GitRevert != nil {
		res.Attempt = h.ro.Status.GitRevert.Attempts
	}
	return h.step(Observations{GitRevert: &res})
}

func TestGitRevertIsRecordedAndRetried(t *testing.T) {
	t.Parallel()
	h := abortedWithRevert(t)
	g := h.ro.Status.GitRevert
	if g == nil || g.Phase != v1alpha1.GitRevertPending || g.FailedRevision != "v2" || g.StableRevision != "v1" || g.Attempts != 1 {
		t.Fatalf("after the abort: gitRevert = %+v", g)
	}
	if rv := h.actions(ActionGitRevert); len(rv) != 1 || rv[0].Revert.FailedRevision != "v2" || rv[0].Revert.Reason != v1alpha1.ReasonNack {
		t.Fatalf("after the abort: actions = %+v", h.out.Actions)
	}
	if _, ok := RevertOutstanding(&h.ro.Status); !ok {
		t.Fatal("the attempt asked for is not outstanding")
	}

	// Nothing new observed: not asked twice, and no timer either (the
	// result wakes the adapter).
	h.advance(time.Hour)
	if len(h.actions(ActionGitRevert)) != 0 || h.out.RequeueAfter != 0 {
		t.Fatalf("attempt under way, nothing observed: actions %+v, requeue %s", h.out.Actions, h.out.RequeueAfter)
	}

	// A result for another request, or for another attempt, is ignored.
	revertResult(h, RevertResult{FailedRevision: "v9", Err: "boom"})
	revertResult(h, RevertResult{FailedRevision: "v2", Attempt: 7, Err: "late"})
	if g := h.ro.Status.GitRevert; g.Failures != 0 || g.Phase != v1alpha1.GitRevertPending {
		t.Fatalf("a result for v9 or attempt 7 changed the v2 revert: %+v", g)
	}

	// Failures back off: 10 s, 20 s, 40 s ...
	for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		revertResult(h, RevertResult{FailedRevision: "v2", Err: "push rejected: \x1b[31mprotected branch"})
		g := h.ro.Status.GitRevert
		if g.Failures != int32(i+1) || g.Phase != v1alpha1.GitRevertPending || strings.ContainsRune(g.LastError, '\x1b') {
			t.Fatalf("failure %d: gitRevert = %+v", i+1, g)
		}
		if _, ok := RevertOutstanding(&h.ro.Status); ok {
			t.Fatalf("failure %d: still outstanding", i+1)
		}
		if h.out.RequeueAfter != wait {
			t.Fatalf("failure %d: requeue %s, want %s", i+1, h.out.RequeueAfter, wait)
		}
		if ev := findEvent(h.out.Events, v1alpha1.ReasonGitRevertFailed); ev == nil {
			t.Fatalf("failure %d: no %s event in %+v", i+1, v1alpha1.ReasonGitRevertFailed, h.out.Events)
		}
		h.advance(wait - time.Second)
		if len(h.actions(ActionGitRevert)) != 0 {
			t.Fatalf("failure %d: asked again before the backoff ended", i+1)
		}
		h.advance(time.Second)
		if len(h.actions(ActionGitRevert)) != 1 || h.ro.Status.GitRevert.Attempts != int32(i+2) {
			t.Fatalf("failure %d: not asked again after %s: %+v", i+1, wait, h.ro.Status.GitRevert)
		}
	}

	// A lost attempt (the adapter restarted) is reported interrupted and
	// asked for again at once.
	h.advance(80 * time.Second)
	revertResult(h, RevertResult{FailedRevision: "v2", Err: RevertInterrupted})
	if len(h.actions(ActionGitRevert)) != 1 {
		t.Fatalf("interrupted attempt not retried: %+v", h.ro.Status.GitRevert)
	}

	revertResult(h, RevertResult{FailedRevision: "v2", Outcome: "pushed", Commit: "abc123"})
	g = h.ro.Status.GitRevert
	if g.Phase != v1alpha1.GitRevertDone || g.Outcome != "pushed" || g.Commit != "abc123" || g.LastError != "" || g.NextAttemptAt != nil {
		t.Fatalf("after success: %+v", g)
	}
	if findEvent(h.out.Events, v1alpha1.ReasonGitReverted) == nil {
		t.Fatalf("no %s event: %+v", v1alpha1.ReasonGitReverted, h.out.Events)
	}
	h.advance(time.Hour)
	if len(h.actions(ActionGitRevert)) != 0 {
		t.Fatal("asked again after success")
	}
	// The revert commit arrives: Healthy, the record stays.
	h.setVersion("v1")
	h.step(Observations{})
	h.wantPhase(v1alpha1.PhaseHealthy)
	if h.ro.Status.GitRevert == nil || h.ro.Status.GitRevert.Phase != v1alpha1.GitRevertDone {
		t.Fatalf("record dropped: %+v", h.ro.Status.GitRevert)
	}
}

func TestGitRevertSupersededByNewRevision(t *testing.T) {
	t.Parallel()
	h := abortedWithRevert(t)
	revertResult(h, RevertResult{FailedRevision: "v2", Err: "remote unreachable"})
	h.setVersion("v3")
	h.step(Observations{})
	g := h.ro.Status.GitRevert
	if g.Phase != v1alpha1.GitRevertDone || g.Outcome != "superseded" {
		t.Fatalf("a push of v3 left the revert of v2 %+v", g)
	}
	if findEvent(h.out.Events, v1alpha1.ReasonGitRevertSuperseded) == nil {
		t.Fatalf("no %s event: %+v", v1alpha1.ReasonGitRevertSuperseded, h.out.Events)
	}
	h.advance(revertRetryMax)
	for _, a := range h.actions(ActionGitRevert) {
		if a.Revert.FailedRevision == "v2" {
			t.Fatalf("superseded revert asked for: %+v", a.Revert)
		}
	}
}

func TestGitRevertSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := abortedWithRevert(t)
	// The status is all a restarted adapter has: it finds the attempt
	// outstanding, reports it interrupted, and is asked again — also when the revert landed before the crash (it then
	// answers "unchanged").
	st := h.ro.Status.DeepCopy()
	lost, ok := RevertOutstanding(st)
	if !ok || lost.FailedRevision != "v2" || lost.Attempt != 1 || lost.Err != RevertInterrupted {
		t.Fatalf("outstanding = %+v, %v", lost, ok)
	}
	revertResult(h, lost)
	if len(h.actions(ActionGitRevert)) != 1 {
		t.Fatalf("not asked again at once: %+v", h.ro.Status.GitRevert)
	}
	revertResult(h, RevertResult{FailedRevision: "v2", Outcome: "unchanged", Commit: "def456"})
	if g := h.ro.Status.GitRevert; g.Phase != v1alpha1.GitRevertDone || g.Outcome != "unchanged" {
		t.Fatalf("after the repeat: %+v", g)
	}
}

func TestRevertBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		failures int32
		want     time.Duration
	}{{0, 10 * time.Second}, {1, 10 * time.Second}, {2, 20 * time.Second}, {6, 320 * time.Second}, {7, 10 * time.Minute}, {1000, 10 * time.Minute}} {
		if got := revertBackoff(tc.failures); got != tc.want {
			t.Errorf("revertBackoff(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func findEvent(evs []Event, reason string) *Event {
	for i := range evs {
		if evs[i].Reason == reason {
			return &evs[i]
		}
	}
	return nil
}

func TestGitRevertCancelledByRetry(t *testing.T) {
	t.Parallel()
	h := abortedWithRevert(t)
	h.command("retry-1", v1alpha1.CommandRetry)
	g := h.ro.Status.GitRevert
	if g.Phase != v1alpha1.GitRevertDone || g.Outcome != "cancelled" {
		t.Fatalf("retrying v2 left its revert %+v", g)
	}
	// The attempt that was under way answers late: ignored.
	revertResult(h, RevertResult{FailedRevision: "v2", Attempt: 1, Outcome: "pushed"})
	if h.ro.Status.GitRevert.Outcome != "cancelled" {
		t.Fatalf("late answer changed the cancelled revert: %+v", h.ro.Status.GitRevert)
	}
}
