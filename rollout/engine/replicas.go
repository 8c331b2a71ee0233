package engine

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
)

// The replicas router (spec.service.routers: [{replicas: {}}]) has no data
// plane to write to: one Service selects the pods of both revisions, so a
// weight is run as pod counts (validation.ReplicaSplit) and scaling is the
// routing. The engine keeps its one loop and changes four things:
//
//   - Traffic moves only with the pods that carry it, both ways: each
//     revision is scaled to the larger of what the traffic in force and
//     the step's target take, and the target comes into force (and the
//     side that loses pods shrinks) once the side that gains has its pods
//     available. A closed window or a pause keeps the counts in force.
//   - The pods are the acknowledgement: a step is acknowledged once its
//     traffic is in force, i.e. when both sides' pods are available. No
//     data-plane answer is waited for, and none is taken in: every plan is
//     recorded as acknowledged the moment it is published.
//   - The plan's canary weight is the achieved one (the canary's share of
//     the pods), which is also what xDS clients of the service are sent,
//     and status.traffic.replicas records the split.
//   - Abort scales the canary to 0 and stable to spec.replicas at once, as
//     a router's abort sends 100% to stable at once; promotion scales the
//     canary to spec.replicas, and the previous stable keeps the pods it
//     had for scaleDownDelaySeconds.

// replicasRouter reports whether the Rollout runs its weights as pod
// counts: the replicas router, in controller mode.
func (s *stepper) replicasRouter() bool {
	return s.ro.Spec.Replicas != nil && validation.ReplicasRouter(&s.ro.Spec)
}

// podSplit is the pods each revision runs for a traffic state with the
// replicas router.
type podSplit struct {
	// weight is the weight asked for.
	weight, canary, stable int32
}

// splitOf is t as pods out of spec.replicas: no rollout runs stable only,
// promotion the canary only.
func splitOf(spec *v1alpha1.RolloutSpec, t traffic) podSplit {
	r := *spec.Replicas
	switch {
	case !t.active:
		return podSplit{stable: r}
	case t.full:
		return podSplit{weight: 100, canary: r}
	}
	c, st := validation.ReplicaSplit(r, t.weight)
	return podSplit{weight: t.weight, canary: c, stable: st}
}

func (p podSplit) achieved() int32 { return validation.AchievedWeight(p.canary, p.stable) }

// String is the split as status messages show it.
func (p podSplit) String() string {
	return fmt.Sprintf("setWeight %d → %d of %d pods (%d%%)", p.weight, p.canary, p.canary+p.stable, p.achieved())
}

// planWeight is the canary weight a plan routes for t: the achieved weight
// with the replicas router, the steps' otherwise.
func planWeight(spec *v1alpha1.RolloutSpec, t traffic) int32 {
	if spec.Replicas != nil && validation.ReplicasRouter(spec) {
		return splitOf(spec, t).achieved()
	}
	if t.full {
		return 100
	}
	return t.weight
}

// stableCarries reports whether stable's available pods carry t's stable
// share where it grows over the traffic in force's.
func (s *stepper) stableCarries(target, inForce traffic) bool {
	need := splitOf(&s.ro.Spec, target).stable
	if need <= splitOf(&s.ro.Spec, inForce).stable {
		return true
	}
	w := s.in.Observations.Workload
	return w != nil && w.StableAvailable >= need
}

// replicaScale is what the replicas router runs while rolling: each side at
// the larger of the target's and the routed traffic's count, or, while the
// routing is held, exactly the routed traffic's.
func (s *stepper) replicaScale(target traffic, r routing) (canary, stable int32) {
	in := splitOf(&s.ro.Spec, r.t)
	if r.g == gateHeld {
		return in.canary, in.stable
	}
	to := splitOf(&s.ro.Spec, target)
	return max(in.canary, to.canary), max(in.stable, to.stable)
}

// recordSplit records the split of the routed traffic in status, and that
// the plan just published is in force: the replicas router has no data
// plane to answer, and the plan's traffic is in force by construction
// (routing lets a split through only once its pods are available).
func (s *stepper) recordSplit(t traffic) {
	tr := &s.st.Traffic
	if !s.replicasRouter() {
		tr.Replicas = nil
		return
	}
	p := splitOf(&s.ro.Spec, t)
	tr.Replicas = &v1alpha1.ReplicaSplitStatus{Weight: p.weight, AchievedWeight: p.achieved(), Canary: p.canary, Stable: p.stable}
	tr.AcknowledgedVersion = tr.PlanVersion
	tr.RejectedVersion, tr.Rejection, tr.StaleNodes = "", "", nil
	for i := range tr.Subsets {
		tr.Subsets[i].Acknowledged = true
	}
}

// waitingForPods says which pods a step of the replicas router waits for.
func (s *stepper) waitingForPods(target traffic) string {
	to := splitOf(&s.ro.Spec, target)
	var c, st int32
	if w := s.in.Observations.Workload; w != nil {
		c, st = w.CanaryAvailable, w.StableAvailable
	}
	var short []string
	if c < to.canary {
		short = append(short, fmt.Sprintf("the canary's pods (%d of %d available)", c, to.canary))
	}
	if st < to.stable {
		short = append(short, fmt.Sprintf("stable's pods (%d of %d available)", st, to.stable))
	}
	if len(short) == 0 {
		short = append(short, "the pods")
	}
	return "waiting for " + strings.Join(short, " and ") + " before moving to " + to.String()
}
