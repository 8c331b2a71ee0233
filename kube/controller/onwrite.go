package controller

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
	"github.com/sluicehq/sluice/rollout/window"
)

// maxStepsOnWrite bounds how many plans one reconcile publishes ahead of
// its status write. A canary step needs one (the step's weight, then its
// pause), a promotion two (100% to the canary, then the plan of the new
// stable revision); the bound only guards against a plan that never
// settles.
const maxStepsOnWrite = 3

// stepOnWrite saves a status write per acknowledged step where the data
// plane answers a write at once (WriteAcknowledger: the Istio writer
// without xDS clients). Without it, a new plan costs two: the status
// naming the plan, pending, is persisted and the plan published, and
// the next reconcile persists the acknowledgement (and what follows from
// it: a pause started, an analysis run). Here, the new plan is published
// first, the answer taken, and the engine stepped again with it, still
// at this reconcile's time of the answer, so that one status write
// records the plan and its acknowledgement together. The later stages
// carry out the last output as usual: the plan is published again (the
// writers skip a write that changes nothing), then the scale and the
// actions.
//
// The order the engine prescribes (persist, then publish) is given up for
// this one write only, and only because it is safe for it: the engine is
// deterministic, the plan's version is its content, and this data
// plane's answer is the write itself. A crash, or a status write lost to
// a conflict, between the publish and the status write leaves the plan in
// force with the status before it; the next reconcile steps from that
// status with fresh observations, decides the same plan (or another one,
// if the world changed, which it publishes over it), finds it already
// written, and takes the acknowledgement again. Nothing edge-triggered
// is lost: an output with actions (analysis runs to stop, a Git
// revert) is persisted before anything is published, as before, and the
// Events of every intermediate output are emitted with the last one's.
func (r *Reconciler) stepOnWrite(ctx context.Context, _ *statusPatcher, rc *reconcileContext) error {
	if validation.ReplicasRouter(&rc.ro.Spec) {
		return nil
	}
	wa, ok := r.Acknowledger.(WriteAcknowledger)
	if !ok {
		return nil
	}
	cur := rc.ro
	for range maxStepsOnWrite {
		out := rc.out
		if !newPlanOnWrite(&cur.Status, &out) || !wa.AcknowledgesOnWrite(cur) {
			return nil
		}
		// The engine reads its input and never changes it, so the
		// Rollout's spec is shared, not copied.
		next := *cur
		next.Status = out.Status
		if err := r.Publisher.Publish(ctx, &next, out.Plan); err != nil {
			// The usual order takes over: persist, publish again, and
			// report what fails then.
			log.FromContext(ctx).V(1).Info("publishing ahead of the status write failed", "plan", out.Plan.Version, "error", err.Error())
			return nil
		}
		dp, err := r.Acknowledger.Acknowledgement(ctx, &next, out.Plan.Version)
		if err != nil || dp.State == engine.AckPending {
			return nil
		}
		// The answer came after the write: a pause or an analysis
		// window starts now, not when the reconcile began.
		now := r.now()
		if now.Before(rc.now) {
			now = rc.now
		}
		obs := rc.obs
		obs.DataPlane = dp
		obs.Window = window.Evaluate(next.Spec.Windows, now)
		// Edge-triggered observations were taken by the first step.
		obs.Commands, obs.GitRevert = nil, nil
		then, err := engine.Step(engine.Input{Rollout: &next, Observations: obs, Now: now})
		if err != nil {
			return nil
		}
		then.Events = append(out.Events, then.Events...)
		rc.out, rc.now = then, now
		if dp.State == engine.AckRejected {
			// What the refusal leads to (an abort's plan, a pause) goes
			// out in the usual order, so the refusal stays on record in
			// status until its answer is in.
			return nil
		}
		cur = &next
	}
	return nil
}

// newPlanOnWrite reports whether out, stepped from st, publishes a plan
// version that its status leaves unanswered, and asks nothing that must
// follow the persisted status besides the plan.
func newPlanOnWrite(st *v1alpha1.RolloutStatus, out *engine.Output) bool {
	tr := &out.Status.Traffic
	v := out.Plan.Version
	return v != "" && v != st.Traffic.PlanVersion && tr.PlanVersion == v &&
		tr.AcknowledgedVersion != v && tr.RejectedVersion != v && len(out.Actions) == 0
}
