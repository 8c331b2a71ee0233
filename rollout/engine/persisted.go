package engine

import (
	"fmt"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// PersistedPlan rebuilds the traffic plan that the Rollout's persisted
// status says is in force: the plan whose Version is
// status.traffic.planVersion. It steps nothing and observes nothing, so any
// process that can read the Rollout can serve what the one that stepped it
// decided; in controller mode every replica serves xDS this way while only
// the leader calls Step.
//
// A plan is a pure function of the spec, the status and how far the steps
// are folded, and the status leaves only a few foldings possible (none, the
// first k steps, or promotion), so trying each is exact and cheap. It fails
// when no folding has that version: the spec changed since the status was
// written (the next Step will publish the new plan) or no plan was ever
// published. Callers then keep serving what they served before.
func PersistedPlan(ro *v1alpha1.Rollout) (plan.Plan, error) {
	if ro == nil {
		return plan.Plan{}, fmt.Errorf("engine: persisted plan: no rollout")
	}
	st := &ro.Status
	want := st.Traffic.PlanVersion
	if want == "" {
		return plan.Plan{}, fmt.Errorf("engine: rollout %s/%s: no plan published yet", ro.Namespace, ro.Name)
	}
	if p := buildPlan(ro, st, traffic{}); p.Version == want {
		return p, nil
	}
	steps, err := compile(ro.Spec.Strategy)
	if err != nil {
		return plan.Plan{}, fmt.Errorf("engine: rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	n := len(steps)
	full := fold(steps, n)
	full.full = true
	if p := buildPlan(ro, st, full); p.Version == want {
		return p, nil
	}
	// Nearest the current step first: that is where the plan almost always is.
	at := n
	if st.CurrentStepIndex != nil {
		at = min(max(int(*st.CurrentStepIndex)+1, 0), n)
	}
	for d := 0; d <= n; d++ {
		for _, k := range []int{at - d, at + d} {
			if k < 0 || k > n || (d == 0 && k != at) {
				continue
			}
			if p := buildPlan(ro, st, fold(steps, k)); p.Version == want {
				return p, nil
			}
		}
	}
	return plan.Plan{}, fmt.Errorf("engine: rollout %s/%s: status.traffic.planVersion %s is not a plan of the current spec (changed since the status was written)", ro.Namespace, ro.Name, want)
}
