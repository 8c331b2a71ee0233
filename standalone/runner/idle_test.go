package runner

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// A pass over Rollouts whose steps change nothing writes nothing to the
// state file and publishes nothing: neither a Rollout at rest nor one
// waiting for its analysis; at rest, the runner finds its steps unchanged
// without encoding them. (Before, every pass rewrote every Rollout in
// a transaction of its own and re-translated every plan once per
// Rollout.)
func TestIdlePassWritesAndPublishesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	x := newXDS(t)
	plane := NewXDSPlane(t.Context(), x.srv, x.eps)
	plane.AckWithoutClients = true
	// The analysis never ends: the second case waits at its analysis step.
	s := f.startWith(v1alpha1.AnalysisRunning, func(o *Options) { o.Plane = plane })

	// inMemory: the steps are found unchanged without encoding them
	// (unchangedStep); a Rollout with analysis runs is left to the store.
	idle := func(what string, inMemory bool) {
		t.Helper()
		settle(t, s.r) // what the last step started (a wait, a run) ends its work
		tx, pubs, same := s.st.Transactions(), publishCount(t, x.reg, ""), s.r.unchanged.Load()
		for range 3 {
			settle(t, s.r)
		}
		if n := s.r.unchanged.Load() - same; inMemory && n < 3 {
			t.Errorf("%s: %d of at least 3 steps over an unchanged Rollout were found unchanged before encoding", what, n)
		}
		if n := s.st.Transactions() - tx; n != 0 {
			t.Errorf("%s: 3 passes over an unchanged Rollout wrote %d transactions", what, n)
		}
		if n := publishCount(t, x.reg, "") - pubs; n != 0 {
			t.Errorf("%s: 3 passes over an unchanged Rollout published %v times", what, n)
		}
	}

	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool {
		return ro.Status.StableRevision == "v1" && ro.Status.Phase == v1alpha1.PhaseHealthy
	})
	idle("at rest", true)

	f.push("v2", 9002, "ship v2")
	waitFor(t, s.r, "analysis step", func(ro rolloutapi.Rollout) bool {
		return ro.Status.CurrentStepIndex != nil && *ro.Status.CurrentStepIndex == 1 && ro.Status.StepAcknowledgedAt != nil &&
			len(ro.Status.Analysis) == 1
	})
	idle("waiting for its analysis", false)
}

// settle asks the runner for a pass and returns once a whole pass ran
// after the request.
func settle(t *testing.T, r *Runner) {
	t.Helper()
	start := r.passes.Load()
	deadline := time.Now().Add(20 * time.Second)
	for r.passes.Load() < start+2 {
		if time.Now().After(deadline) {
			t.Fatal("the runner made no pass")
		}
		r.poke()
		time.Sleep(10 * time.Millisecond)
	}
}
