package rolloutapi

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestTimelineFromTheEngine drives the engine through a canary with a
// timed pause and lays out the steps from its own events: finished steps
// have a start and an end, the current one its start, acknowledgement and
// (for a timed pause) when it ends.
func TestTimelineFromTheEngine(t *testing.T) {
	t.Parallel()
	w20, w50 := int32(20), int32(50)
	ro := rolloutAt()
	ro.Spec.Strategy.Canary.Steps = []v1alpha1.CanaryStep{
		{SetWeight: &w20}, {Pause: &v1alpha1.PauseStep{Duration: dur(time.Minute)}}, {SetWeight: &w50},
	}
	var history []Event
	var p plan.Plan
	now := t0
	run := func(obs engine.Observations) {
		t.Helper()
		out, err := engine.Step(engine.Input{Rollout: ro, Now: now, Observations: obs})
		if err != nil {
			t.Fatal(err)
		}
		ro.Status, p = out.Status, out.Plan
		for _, e := range out.Events {
			history = append(history, Event{Time: now, Type: string(e.Type), Reason: e.Reason, Message: e.Message})
		}
	}
	ack := func() engine.Observations {
		return engine.Observations{DataPlane: engine.DataPlane{Version: p.Version, State: engine.AckAcknowledged}}
	}
	run(engine.Observations{}) // step 1 published
	now = now.Add(2 * time.Second)
	run(ack()) // step 1 acknowledged
	now = now.Add(3 * time.Second)
	run(ack()) // step 2 (the pause) entered, nothing to acknowledge
	ackAt := now

	r := FromRolloutAt(ro, &p, now)
	tl := Timeline(r, history)
	if len(tl) != 4 {
		t.Fatalf("%d steps, want 4 (3 and promotion): %+v", len(tl), tl)
	}
	if tl[0].State != StepDone || tl[0].Started == nil || !tl[0].Started.Equal(t0) || tl[0].Duration() != 5*time.Second {
		t.Errorf("step 1: %+v (duration %v), want done, started at t0, 5s", tl[0], tl[0].Duration())
	}
	c := tl[1]
	if c.State != StepCurrent || c.Started == nil || !c.Started.Equal(ackAt) {
		t.Errorf("step 2: %+v, want current, started 5s in", c)
	}
	if c.Acknowledged == nil || !c.Acknowledged.Equal(ackAt) || c.PauseEnds == nil || !c.PauseEnds.Equal(ackAt.Add(time.Minute)) {
		t.Errorf("step 2: acknowledged %v, pause ends %v; want %v and a minute later", c.Acknowledged, c.PauseEnds, ackAt)
	}
	if tl[2].State != StepNext || tl[2].Started != nil || tl[3].Label != "promote to 100%" {
		t.Errorf("steps 3-4: %+v %+v", tl[2], tl[3])
	}

	// An abort fails the current step; a retry starts the times afresh.
	now = now.Add(time.Second)
	run(engine.Observations{Commands: []engine.Command{{ID: "a", Kind: v1alpha1.CommandAbort}}})
	if tl := Timeline(FromRolloutAt(ro, &p, now), history); tl[1].State != StepFailed || tl[1].PauseEnds != nil {
		t.Errorf("after abort: %+v", tl[1])
	}
	now = now.Add(time.Second)
	run(engine.Observations{Commands: []engine.Command{{ID: "r", Kind: v1alpha1.CommandRetry}}})
	tl = Timeline(FromRolloutAt(ro, &p, now), history)
	if tl[0].State != StepCurrent || tl[0].Started == nil || !tl[0].Started.Equal(now) {
		t.Errorf("after retry, step 1: %+v, want current since %v", tl[0], now)
	}
	if tl[1].State != StepNext || tl[1].Started != nil {
		t.Errorf("after retry, step 2: %+v, want next with no time", tl[1])
	}
}

func TestTimelineWithoutRollout(t *testing.T) {
	t.Parallel()
	r := Rollout{Steps: []string{"setWeight 20", "promote to 100%"}, Status: v1alpha1.RolloutStatus{StableRevision: "v1"}}
	if tl := Timeline(r, nil); tl != nil {
		t.Fatalf("timeline without a rollout: %+v", tl)
	}
}

func TestPauseDuration(t *testing.T) {
	t.Parallel()
	for label, want := range map[string]time.Duration{"pause 1m30s": 90 * time.Second, "pause until promote": 0, "setWeight 20": 0} {
		d, ok := PauseDuration(label)
		if d != want || ok != (want > 0) {
			t.Errorf("PauseDuration(%q) = %v, %v; want %v", label, d, ok, want)
		}
	}
}
