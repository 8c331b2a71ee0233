package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestPersistedPlanRefusesWhatItCannotRebuild(t *testing.T) {
	t.Parallel()
	stepped := func() *v1alpha1.Rollout {
		ro := standalone("v2", canary(weight(10), pauseForever(), weight(50)))
		out, err := Step(Input{Rollout: ro, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		ro.Status = out.Status
		return ro
	}
	tests := []struct {
		name   string
		change func(*v1alpha1.Rollout)
		want   string
	}{
		{"never published", func(ro *v1alpha1.Rollout) { ro.Status = v1alpha1.RolloutStatus{} }, "no plan published yet"},
		{"hosts changed since", func(ro *v1alpha1.Rollout) { ro.Spec.Service.Hosts = []string{"other"} }, "not a plan of the current spec"},
		{"unknown version", func(ro *v1alpha1.Rollout) {
			ro.Status.Traffic.PlanVersion = "0000"
		}, "not a plan of the current spec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := stepped()
			tc.change(ro)
			_, err := PersistedPlan(ro)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PersistedPlan error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPersistedPlanFollowsEveryStep(t *testing.T) {
	t.Parallel()
	ro := standalone("v2", canary(weight(10), pauseFor(time.Minute), weight(50), pauseFor(time.Minute)))
	now := t0
	seen := map[string]bool{}
	for i := range 12 {
		var obs Observations
		if v := ro.Status.Traffic.PlanVersion; v != "" {
			obs.DataPlane = DataPlane{Version: v, State: AckAcknowledged}
		}
		out, err := Step(Input{Rollout: ro, Observations: obs, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		ro.Status = out.Status
		got, err := PersistedPlan(ro)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Version != out.Plan.Version {
			t.Fatalf("step %d: rebuilt plan %s, published %s", i, got.Version, out.Plan.Version)
		}
		seen[got.Version] = true
		now = now.Add(45 * time.Second)
	}
	// warm-up 0%, 10%, 50%, 100%, then stable-only: the walk must have
	// crossed several plans, or it tested one case only.
	if len(seen) < 4 {
		t.Fatalf("the rollout crossed %d plans, want at least 4", len(seen))
	}
}
