package engine

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// ReasonRemovedFromGit is the reason of a retired Rollout's conditions and
// of the Event that reports its retirement.
const ReasonRemovedFromGit = "RemovedFromGit"

// RetireInput is what Retire looks at.
type RetireInput struct {
	// Input's Rollout is the Rollout as last persisted, Now the time. Of
	// the observations only DataPlane and Commands are used: a retired
	// Rollout takes no steps and waits for no analysis, and every command
	// is refused (recorded in status.lastCommand, so a CLI waiting for its
	// answer gets one).
	Input
	// Commit is the commit that no longer has the Rollout, for the report.
	Commit string
	// InForce, when set, is the plan last published, and the retired plan
	// is cut down from it. Callers that no longer have the spec set it
	// (standalone mode, whose manifest left Git with the spec); otherwise
	// the plan is built from the spec, as Step would build it with no
	// rollout in progress, so PersistedPlan rebuilds it from the status.
	InForce *plan.Plan
}

// Retired reports whether a status records a retirement.
func Retired(st *v1alpha1.RolloutStatus) bool {
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	return c != nil && c.Reason == ReasonRemovedFromGit
}

// Retire is Step for a Rollout whose manifest left Git (docs/gitsync.md):
// Sluice stops managing it, leaves its traffic at 100% to the stable
// revision and keeps its routes in place, since removing them would turn a
// Git cleanup into an outage. Its Output is carried out like Step's:
//
//   - Status: no rollout in progress (canary, step, pause and abort
//     cleared, an in-flight canary recorded in lastRollout), every
//     unfinished analysis run terminated, phase Healthy, Ready=True and
//     Progressing, Paused, Aborted False, all with reason RemovedFromGit;
//   - Plan: 100% to stable, with the host's route policies; header routes,
//     mirrors and preview hosts dropped;
//   - Scale: the stable revision at spec.replicas (and a promoted-from
//     revision until its scale-down is due);
//   - Actions: StopAnalysis for each run it terminated;
//   - Events: one Warning RemovedFromGit, naming the commit.
//
// Retiring a retired Rollout again changes nothing but what the data plane
// said of the plan (and the plan itself, should someone edit the spec's
// routing), with no Event: callers may call it on every reconcile.
func Retire(in RetireInput) Output {
	s := &stepper{in: in.Input, ro: in.Rollout, st: *in.Rollout.Status.DeepCopy(), now: in.Now}
	if !Retired(&s.st) {
		s.retire(in.Commit)
	}
	// With no rollout in progress, every command is refused.
	s.applyCommands()
	// The answer is about the plan persisted before this call.
	s.observeDataPlane()
	var p plan.Plan
	if in.InForce != nil {
		p = cutToStable(*in.InForce)
	} else {
		p = buildPlan(s.ro, &s.st, traffic{})
	}
	recordTraffic(&s.st.Traffic, p, routedNone)
	s.recordSplit(traffic{})
	scale := s.scale(routing{k: routedNone})
	return Output{
		Status:       s.st,
		Plan:         p,
		Scale:        scale,
		Actions:      s.stops,
		Events:       s.events,
		RequeueAfter: s.requeue(),
	}
}

// retire records the retirement in the status.
func (s *stepper) retire(commit string) {
	st := &s.st
	msg := "removed from Git"
	if commit != "" {
		msg += " at commit " + shortCommit(commit)
	}
	msg += ": traffic left at 100% to stable revision " + st.StableRevision +
		", routes kept; no longer managed (delete the Rollout to remove its routes)"
	if st.CanaryRevision != "" {
		s.recordOutcome(v1alpha1.OutcomeRolledBack)
		if st.Abort == nil {
			st.LastRollout.Reason, st.LastRollout.Message = ReasonRemovedFromGit, msg
		}
	}
	s.endRollout("rollout removed from Git")
	st.CanaryBackend = nil
	st.StepDisplay = ""
	st.ObservedGeneration = s.ro.Generation
	st.Phase, st.Message = v1alpha1.PhaseHealthy, msg
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionProgressing, v1alpha1.ConditionPaused, v1alpha1.ConditionAborted} {
		status := metav1.ConditionFalse
		if typ == v1alpha1.ConditionReady {
			// Ready's reason is what Retired looks for.
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: ReasonRemovedFromGit, Message: msg,
			ObservedGeneration: s.ro.Generation, LastTransitionTime: *mt(s.now),
		})
	}
	s.event(EventWarning, ReasonRemovedFromGit, "%s", msg)
}

func shortCommit(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// cutToStable keeps each host's catch-all route at 100% stable with the
// route's policy, and drops hosts that only ever served the canary (blue/
// green preview hosts).
func cutToStable(p plan.Plan) plan.Plan {
	out := plan.Plan{Service: p.Service, Namespace: p.Namespace}
	for _, s := range p.Subsets {
		if s.Name == plan.Stable {
			out.Subsets = append(out.Subsets, s)
		}
	}
	for _, h := range p.Hosts {
		last := h.Routes[len(h.Routes)-1]
		if !slices.ContainsFunc(last.Destinations, func(d plan.Destination) bool { return d.Subset == plan.Stable }) {
			continue
		}
		out.Hosts = append(out.Hosts, plan.Host{Name: h.Name, Port: h.Port, Routes: []plan.Route{{
			Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}, Policy: last.Policy,
		}}})
	}
	out.Seal()
	return out
}
