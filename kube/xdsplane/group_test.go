package xdsplane

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// Updates that arrive while a publish runs go out together in the next
// one (one publish for the whole group, not one each), and a bad plan in
// the group still fails only its own Rollout.
func TestUpdatesQueuedDuringAPublishGoOutTogether(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	srv, err := xds.New(xds.Options{Logger: quiet, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	publishes := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() != "sluice_xds_publishes_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
		return total
	}
	pl := NewPlane(t.Context(), srv, Options{AckWithoutClients: true})
	ctx := context.Background()

	type rollout struct {
		ro *v1alpha1.Rollout
		p  plan.Plan
	}
	const n = 8
	var good []rollout
	for i := range n {
		ro, p := rolloutAt(t, "shop", fmt.Sprintf("svc-%d", i), fmt.Sprintf("svc-%d", i), 30, "10")
		good = append(good, rollout{ro, p})
	}
	thiefRO, thiefPlan := rolloutAt(t, "shop", "thief", "svc-0", 30, "11")
	// svc-0 routes its host first; the thief's plan for it comes in the
	// group.
	if err := pl.Publish(ctx, good[0].ro, good[0].p); err != nil {
		t.Fatal(err)
	}
	before := publishes()

	// A publish is running (its slot is taken) while every update arrives.
	pl.publishing <- struct{}{}
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i, r := range good[1:] {
		wg.Go(func() { errs[i+1] = pl.Publish(ctx, r.ro, r.p) })
	}
	wg.Go(func() { errs[n] = pl.Publish(ctx, thiefRO, thiefPlan) })
	poll.Until(t, "every update queued", func() bool {
		pl.qmu.Lock()
		defer pl.qmu.Unlock()
		return len(pl.queued) == n
	})
	<-pl.publishing
	wg.Wait()

	for i, r := range good {
		if errs[i] != nil {
			t.Errorf("%s: %v", r.ro.Name, errs[i])
		}
		if !inForce(srv, r.p) {
			t.Errorf("%s: plan not in force", r.ro.Name)
		}
	}
	if errs[n] == nil || !strings.Contains(errs[n].Error(), "thief") {
		t.Errorf("the plan for a host another Rollout routes: %v, want an error naming it", errs[n])
	}
	// The group failed as a whole (the thief), then went out one update
	// at a time: 1 + n publishes. Without the thief it is one publish.
	if got := publishes() - before; got != n+1 {
		t.Errorf("%v publishes for a group with a bad plan, want %d (the group, then each alone)", got, n+1)
	}

	for i := range good {
		good[i].ro, good[i].p = rolloutAt(t, "shop", fmt.Sprintf("svc-%d", i), fmt.Sprintf("svc-%d", i), 80, "20")
	}
	before = publishes()
	pl.publishing <- struct{}{}
	for i, r := range good {
		wg.Go(func() { errs[i] = pl.Publish(ctx, r.ro, r.p) })
	}
	poll.Until(t, "every update queued", func() bool {
		pl.qmu.Lock()
		defer pl.qmu.Unlock()
		return len(pl.queued) == n
	})
	<-pl.publishing
	wg.Wait()
	for i, r := range good {
		if errs[i] != nil || !inForce(srv, r.p) {
			t.Errorf("%s at 80%%: err %v, in force %v", r.ro.Name, errs[i], inForce(srv, r.p))
		}
	}
	if got := publishes() - before; got != 1 {
		t.Errorf("%v publishes for %d updates queued during one publish, want 1", got, n)
	}
}
