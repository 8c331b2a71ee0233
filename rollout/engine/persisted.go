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
// are folded (status.traffic.routedSteps). It fails when that folding does
// not have the version: the spec changed since the status was written (the
// next Step will publish the new plan) or no plan was ever published.
// Callers then keep serving what they served before.
func PersistedPlan(ro *v1alpha1.Rollout) (plan.Plan, error) {
	if ro == nil {
		return plan.Plan{}, fmt.Errorf("engine: persisted plan: no rollout")
	}
	st := &ro.Status
	if st.Traffic.PlanVersion == "" {
		return plan.Plan{}, fmt.Errorf("engine: rollout %s/%s: no plan published yet", ro.Namespace, ro.Name)
	}
	steps, err := compile(ro.Spec.Strategy)
	if err != nil {
		return plan.Plan{}, fmt.Errorf("engine: rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	if _, p, ok := locateRouted(ro, st, steps); ok {
		return p, nil
	}
	return plan.Plan{}, fmt.Errorf("engine: rollout %s/%s: status.traffic.planVersion %s is not a plan of the current spec (changed since the status was written)", ro.Namespace, ro.Name, st.Traffic.PlanVersion)
}

// locateRouted finds how many steps the plan of status.traffic.planVersion
// folds in. status.traffic.routedSteps says so; a status written before
// that field existed leaves only a few foldings possible (none, the first
// k steps, promotion), and trying each is exact.
func locateRouted(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, steps []step) (int, plan.Plan, bool) {
	want := st.Traffic.PlanVersion
	try := func(k int) (plan.Plan, bool) {
		p := buildPlan(ro, st, foldRouted(steps, k))
		return p, p.Version == want
	}
	if k := st.Traffic.RoutedSteps; k != nil && int(*k) >= 0 && int(*k) <= len(steps)+1 {
		if p, ok := try(int(*k)); ok {
			return int(*k), p, true
		}
	}
	if p, ok := try(routedNone); ok {
		return routedNone, p, true
	}
	n := len(steps)
	if p, ok := try(n + 1); ok {
		return n + 1, p, true
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
			if p, ok := try(k); ok {
				return k, p, true
			}
		}
	}
	return 0, plan.Plan{}, false
}

// migrateTraffic fills in status.traffic.routedSteps and subsets for a
// status written before they existed, from the plan its version names, so
// an upgrade neither drops a canary's traffic nor adds it again at 0%.
func (s *stepper) migrateTraffic() {
	tr := &s.st.Traffic
	if tr.PlanVersion == "" || tr.Subsets != nil {
		return
	}
	k, p, ok := locateRouted(s.ro, &s.st, s.steps)
	if !ok {
		return
	}
	acked := tr.AcknowledgedVersion == tr.PlanVersion
	recordTraffic(tr, p, k)
	for i := range tr.Subsets {
		tr.Subsets[i].Acknowledged = acked
	}
}
