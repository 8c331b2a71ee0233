package runner

import (
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
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

// lateAckPlane acknowledges at once every plan but those that serve
// revision late alone (a promotion), which it acknowledges on release:
// a proxy that answers the promotion's plan after the pass that
// decided it, as on a loaded machine.
type lateAckPlane struct {
	*ackingPlane
	late string

	heldMu   sync.Mutex
	released bool
}

func (l *lateAckPlane) Observe(p plan.Plan) engine.DataPlane {
	l.heldMu.Lock()
	held := !l.released && p.Revision(plan.Stable) == l.late && p.Revision(plan.Canary) == ""
	l.heldMu.Unlock()
	if held {
		return engine.DataPlane{}
	}
	return l.ackingPlane.Observe(p)
}

func (l *lateAckPlane) release() {
	l.heldMu.Lock()
	l.released = true
	l.heldMu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// A Rollout is Healthy once its promotion is decided; the proxies' ACK
// of that last plan may come later, and is then a change of state of
// its own: one write that records it (status.traffic.acknowledgedVersion),
// and none before or after. This is the write BenchmarkThousandRollouts'
// idle pass made on a loaded machine, when the ACKs of the promotions
// arrived after the passes meant to let the Rollouts settle.
func TestLateAckOfPromotionIsOneWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	plane := &lateAckPlane{ackingPlane: newAckingPlane(), late: "v2"}
	s := f.startWith(v1alpha1.AnalysisSuccessful, func(o *Options) { o.Plane = plane })
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool {
		return ro.Status.StableRevision == "v1" && ro.Status.Phase == v1alpha1.PhaseHealthy
	})

	f.push("v2", 9002, "ship v2")
	ro := waitFor(t, s.r, "v2 promoted", func(ro rolloutapi.Rollout) bool {
		return ro.Status.StableRevision == "v2" && ro.Status.Phase == v1alpha1.PhaseHealthy
	})
	if tr := ro.Status.Traffic; tr.AcknowledgedVersion == tr.PlanVersion {
		t.Fatalf("the promotion's plan %s is acknowledged before its ACK", tr.PlanVersion)
	}
	settle(t, s.r)
	tx := s.st.Transactions()
	for range 3 {
		settle(t, s.r)
	}
	if n := s.st.Transactions() - tx; n != 0 {
		t.Errorf("3 passes waiting for the promotion's ACK wrote %d transactions", n)
	}

	plane.release()
	ro = waitFor(t, s.r, "the promotion acknowledged", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Traffic.AcknowledgedVersion == ro.Status.Traffic.PlanVersion
	})
	if n := s.st.Transactions() - tx; n != 1 {
		t.Errorf("the promotion's ACK took %d transactions to record, want 1", n)
	}
	stored, err := s.st.Get("default/reviews")
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.Status.Traffic.AcknowledgedVersion; got != ro.Status.Traffic.PlanVersion {
		t.Errorf("the file records acknowledged version %q, want %q", got, ro.Status.Traffic.PlanVersion)
	}
	tx = s.st.Transactions()
	for range 3 {
		settle(t, s.r)
	}
	if n := s.st.Transactions() - tx; n != 0 {
		t.Errorf("3 passes after the ACK was recorded wrote %d transactions", n)
	}
}
