package engine

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
)

// finish renders the plan, reconciles analysis runs and replicas, and
// summarises the status for people.
func (s *stepper) finish() Output {
	st := &s.st
	st.CanaryBackend = nil
	if st.CanaryRevision != "" {
		st.CanaryBackend = s.ro.Spec.Backend.DeepCopy()
	}
	s.reconcileRuns()
	r := s.routing()
	s.routed = &r
	s.syncExtras(r.t)
	p := buildPlan(s.ro, st, r.t)
	if s.rolling() && st.CurrentStepIndex != nil && st.StepAcknowledgedAt == nil && p.Version != st.Traffic.PlanVersion {
		// Every plan a step publishes gets the whole progress deadline:
		// the wait for replicas (or for a window) is over, the wait for
		// the data plane starts.
		st.StepStartedAt = mt(s.now)
	}
	recordTraffic(&st.Traffic, p, r.k)
	s.recordSplit(r.t)
	scale := s.scale(r)
	s.summarize()

	s.dueRevert()
	actions := append(append(s.stops, s.starts...), s.reverts...)
	return Output{
		Status:       *st,
		Plan:         p,
		Scale:        scale,
		Actions:      actions,
		Events:       s.events,
		RequeueAfter: s.requeue(),
	}
}

// recordTraffic summarises the plan to be published in the status; k is
// how many steps it folds in (routedNone: stable only).
func recordTraffic(tr *v1alpha1.TrafficStatus, p plan.Plan, k int) {
	if tr.PlanVersion != p.Version {
		// An acknowledgement is of what the proxies were last sent; after a
		// new publish only a new answer counts, even if the content flips
		// back to a version acknowledged before.
		tr.AcknowledgedVersion = ""
		// Stale nodes were silent on the old version; the new one is
		// judged afresh.
		tr.StaleNodes = nil
	}
	tr.PlanVersion = p.Version
	tr.RoutedSteps = nil
	if k != routedNone {
		k32 := int32(k)
		tr.RoutedSteps = &k32
	}
	// A subset stays known to the data plane while every plan keeps it.
	subsets := make([]v1alpha1.SubsetStatus, 0, len(p.Subsets))
	for _, sub := range p.Subsets {
		known := slices.ContainsFunc(tr.Subsets, func(o v1alpha1.SubsetStatus) bool {
			return o.Name == sub.Name && o.Revision == sub.Revision && o.Acknowledged
		})
		var weight int32
		if len(p.Hosts) > 0 {
			weight = p.Hosts[0].Weight(sub.Name)
		}
		subsets = append(subsets, v1alpha1.SubsetStatus{Name: sub.Name, Revision: sub.Revision, Acknowledged: known, Weight: weight})
	}
	tr.Subsets = subsets
	tr.Routes = nil
	tr.MirrorPercent = 0
	if len(p.Hosts) == 0 {
		return
	}
	h := p.Hosts[0]
	tr.StableWeight, tr.CanaryWeight = h.Weight(plan.Stable), h.Weight(plan.Canary)
	for _, r := range h.Routes {
		if len(r.Match) > 0 && len(r.Destinations) == 1 && r.Destinations[0].Subset != plan.Stable {
			tr.Routes = append(tr.Routes, r.Name)
		}
		if r.Mirror != nil && len(r.Match) == 0 {
			tr.MirrorPercent = r.Mirror.Percent
		}
	}
}

// A run belongs to a slot: a step (by index) or the background. A slot may
// hold several runs when resume asks to measure again; the latest run not
// terminated is the one that counts.

// stepRun is the current run of step i, or nil.
func (s *stepper) stepRun(i int) *v1alpha1.AnalysisRunStatus {
	return s.slotRun(func(r *v1alpha1.AnalysisRunStatus) bool {
		return r.Kind != v1alpha1.AnalysisBackgroundKind && r.StepIndex != nil && int(*r.StepIndex) == i
	})
}

func (s *stepper) backgroundRun() *v1alpha1.AnalysisRunStatus {
	return s.slotRun(func(r *v1alpha1.AnalysisRunStatus) bool { return r.Kind == v1alpha1.AnalysisBackgroundKind })
}

func (s *stepper) slotRun(in func(*v1alpha1.AnalysisRunStatus) bool) *v1alpha1.AnalysisRunStatus {
	for i := len(s.st.Analysis) - 1; i >= 0; i-- {
		if r := &s.st.Analysis[i]; in(r) {
			if r.Terminated {
				return nil
			}
			return r
		}
	}
	return nil
}

// newRunName names the next run of a slot. status.starts makes every
// rollout and retry use fresh names, so an adapter that starts runs
// idempotently by name never hands back an old verdict.
func (s *stepper) newRunName(kind v1alpha1.AnalysisKind, i int) string {
	var suffix string
	switch kind {
	case v1alpha1.AnalysisPrePromotion:
		suffix = "pre"
	case v1alpha1.AnalysisPostPromotion:
		suffix = "post"
	case v1alpha1.AnalysisDark:
		suffix = "dark"
	case v1alpha1.AnalysisBackgroundKind:
		suffix = "background"
	default:
		suffix = "step" + strconv.Itoa(i+1)
	}
	rev := s.st.CanaryRevision
	if len(rev) > 20 {
		rev = rev[:20]
	}
	name := fmt.Sprintf("%s-%s-%d-%s", s.ro.Name, rev, s.st.Starts, suffix)
	n := 0
	for _, r := range s.st.Analysis {
		if r.Name == name || strings.HasPrefix(r.Name, name+"-") {
			n++
		}
	}
	if n > 0 {
		name += "-" + strconv.Itoa(n+1)
	}
	return name
}

// reconcileRuns starts the runs the current position wants and stops the
// ones it no longer wants. A step's run starts when its traffic is
// acknowledged, so it measures the traffic it judges.
func (s *stepper) reconcileRuns() {
	st := &s.st
	want := map[string]bool{}
	if s.rolling() && st.CurrentStepIndex != nil {
		i := int(*st.CurrentStepIndex)
		if i < len(s.steps) && s.steps[i].kind == stepAnalysis && st.StepAcknowledgedAt != nil {
			r := s.stepRun(i)
			if r == nil {
				idx := int32(i)
				r = s.startRun(s.newRunName(s.steps[i].aKind, i), s.steps[i].aKind, &idx, s.steps[i].analysis)
			}
			want[r.Name] = true
		}
		if s.backgroundActive() {
			r := s.backgroundRun()
			if r == nil {
				r = s.startRun(s.newRunName(v1alpha1.AnalysisBackgroundKind, 0), v1alpha1.AnalysisBackgroundKind, nil, &s.ro.Spec.Analysis.AnalysisStep)
			}
			want[r.Name] = true
		}
	}
	s.stopRuns(func(r *v1alpha1.AnalysisRunStatus) bool { return !want[r.Name] }, "no longer needed at this step")
}

func (s *stepper) startRun(name string, kind v1alpha1.AnalysisKind, idx *int32, a *v1alpha1.AnalysisStep) *v1alpha1.AnalysisRunStatus {
	r := v1alpha1.AnalysisRunStatus{
		Name:      name,
		Kind:      kind,
		StepIndex: idx,
		Templates: append([]v1alpha1.TemplateRef(nil), a.Templates...),
		Args:      s.runArgs(a),
		Phase:     v1alpha1.AnalysisRunning,
		StartedAt: mt(s.now),
	}
	s.st.Analysis = append(s.st.Analysis, r)
	s.starts = append(s.starts, Action{Kind: ActionStartAnalysis, Run: runOf(&r)})
	s.event(EventNormal, "AnalysisStarted", "%s analysis run %s started", lowerKind(kind), name)
	return &s.st.Analysis[len(s.st.Analysis)-1]
}

// runArgs appends the built-in arguments every template may use; a user
// argument of the same name wins. The step's baseline and candidate stand
// in for stable and canary (stableRevision, canaryRevision and the subsets
// a comparison renders), and every extra revision running has its own.
func (s *stepper) runArgs(a *v1alpha1.AnalysisStep) []v1alpha1.Argument {
	host := ""
	if hs := s.ro.Spec.Service.Hosts; len(hs) > 0 {
		host = hs[0]
	}
	revisions := extraSubsets(&s.st)
	revisions[plan.Stable], revisions[plan.Canary] = s.st.StableRevision, s.st.CanaryRevision
	baseline, candidate := cmp.Or(a.Baseline, plan.Stable), cmp.Or(a.Candidate, plan.Canary)
	builtins := []v1alpha1.Argument{
		{Name: "rollout", Value: s.ro.Name},
		{Name: "namespace", Value: s.ro.Namespace},
		{Name: "service", Value: s.ro.Spec.Service.Name},
		{Name: "host", Value: host},
		{Name: "stableRevision", Value: revisions[baseline]},
		{Name: "canaryRevision", Value: revisions[candidate]},
		{Name: "stableSubset", Value: baseline},
		{Name: "canarySubset", Value: candidate},
	}
	for _, x := range s.st.ExtraRevisions {
		arg := strings.ReplaceAll(x.Name, "-", "_")
		builtins = append(builtins,
			v1alpha1.Argument{Name: validation.ExtraRevisionArg + arg, Value: x.Revision},
			v1alpha1.Argument{Name: validation.ExtraSubsetArg + arg, Value: x.Name})
	}
	seen := map[string]bool{}
	out := make([]v1alpha1.Argument, 0, len(a.Args)+len(builtins))
	for _, u := range a.Args {
		seen[u.Name] = true
		out = append(out, u)
	}
	for _, b := range builtins {
		if !seen[b.Name] {
			out = append(out, b)
		}
	}
	return out
}

func (s *stepper) backgroundActive() bool {
	bg := s.ro.Spec.Analysis
	st := &s.st
	if bg == nil || !s.rolling() || st.CurrentStepIndex == nil {
		return false
	}
	if bg.StartingStep == nil {
		return true
	}
	i := int(*st.CurrentStepIndex)
	if i >= len(s.steps) {
		return true
	}
	for j := 0; j <= i; j++ {
		if s.steps[j].canaryIndex >= int(*bg.StartingStep) {
			return true
		}
	}
	return false
}

// scale lists the replicas each revision should run; unlisted revisions
// run none. rt is the routing the plan publishes.
func (s *stepper) scale(rt routing) []Scale {
	spec, st, t := &s.ro.Spec, &s.st, rt.t
	if spec.Replicas == nil {
		return nil
	}
	r := *spec.Replicas
	want := map[string]int32{st.StableRevision: r}
	if s.rolling() {
		// Scale for the step's target, not the gated traffic: replicas
		// come first, routing follows once they are ready. Never below
		// what the traffic in force takes, though: a step that lowers the
		// weight may be held by a window while the higher weight is
		// still routed.
		target := t
		if i := st.CurrentStepIndex; i != nil {
			target = s.foldAt(min(int(*i), len(s.steps)) + 1)
		}
		want[st.CanaryRevision] = max(want[st.CanaryRevision], s.canaryReplicas(target), s.need(t))
		if s.replicasRouter() {
			// Pods are the routing: both sides follow the split
			// (replicas.go).
			want[st.CanaryRevision], want[st.StableRevision] = s.replicaScale(target, rt)
		}
		for _, x := range st.ExtraRevisions {
			if !x.Ended {
				want[x.Revision] = max(want[x.Revision], x.Replicas)
			}
		}
	} else if s.abortHolds() {
		// Proxies that have not seen the abort still route to the
		// canary by the plan before it: its pods stay until the
		// 100%-stable plan is acknowledged or the delay is over.
		want[st.CanaryRevision] = *st.Abort.KeepCanaryReplicas
	}
	if sd := st.ScaleDown; sd != nil {
		if s.now.Before(sd.At.Time) {
			keep := r
			if sd.Replicas != nil {
				keep = *sd.Replicas
			}
			want[sd.Revision] = max(want[sd.Revision], keep)
		} else {
			s.event(EventNormal, "ScaledDown", "previous revision %s scaled down", sd.Revision)
			st.ScaleDown = nil
		}
	}
	out := make([]Scale, 0, len(want))
	for rev, n := range want {
		out = append(out, Scale{Revision: rev, Replicas: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out
}

// abortHolds reports whether an aborted canary keeps its pods: until the
// data plane acknowledged the plan that sends everything to stable, for at
// most scaleDownDelaySeconds after the abort (the delay a previous stable
// gets after a promotion, for the same clients). Scaling it to zero at
// once would turn the requests of every proxy that has not yet applied
// the abort into connection errors. The replicas router has no proxies:
// there the pods are the routing, and the abort takes them at once.
func (s *stepper) abortHolds() bool {
	st := &s.st
	if st.Abort == nil || st.Abort.KeepCanaryReplicas == nil || st.CanaryRevision == "" || s.ro.Spec.Replicas == nil || s.replicasRouter() {
		return false
	}
	if tr := st.Traffic; tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion {
		return false
	}
	return s.now.Before(st.Abort.At.Add(s.scaleDownDelay()))
}

// summarize derives phase, message, step display and conditions from the
// state; they are views, never inputs.
func (s *stepper) summarize() {
	st := &s.st
	phase, reason, msg := s.phase()
	if s.replicasRouter() && s.rolling() && st.CurrentStepIndex != nil {
		msg += "; in force: " + splitOf(&s.ro.Spec, s.routed.t).String()
	}
	st.Phase, st.Message = phase, msg
	st.StepDisplay = ""
	if st.CanaryRevision != "" {
		cur := 0
		if st.CurrentStepIndex != nil {
			cur = int(*st.CurrentStepIndex) + 1
		}
		st.StepDisplay = fmt.Sprintf("%d/%d", cur, len(s.steps)+1)
	}
	set := func(typ string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg,
			ObservedGeneration: s.ro.Generation, LastTransitionTime: *mt(s.now),
		})
	}
	set(v1alpha1.ConditionReady, phase == v1alpha1.PhaseHealthy, reason, msg)
	set(v1alpha1.ConditionProgressing, phase == v1alpha1.PhaseProgressing || phase == v1alpha1.PhasePaused, reason, msg)
	if phase == v1alpha1.PhasePaused {
		set(v1alpha1.ConditionPaused, true, reason, msg)
	} else {
		set(v1alpha1.ConditionPaused, false, "NotPaused", "the rollout is not waiting for a person or a window")
	}
	if st.Abort != nil {
		set(v1alpha1.ConditionAborted, true, st.Abort.Reason, st.Abort.Message)
	} else {
		set(v1alpha1.ConditionAborted, false, "NotAborted", "no abort in effect")
	}
}

func (s *stepper) phase() (v1alpha1.Phase, string, string) {
	st := &s.st
	switch {
	case st.Abort != nil:
		return v1alpha1.PhaseDegraded, st.Abort.Reason, st.Abort.Message + "; 100% to stable " + st.StableRevision + "; retry or push a new revision"
	case s.rejected() && (st.Pause == nil || st.Pause.Reason != v1alpha1.ReasonNack):
		tr := &st.Traffic
		msg := "data plane rejected plan " + tr.PlanVersion + ": " + tr.Rejection
		if st.CanaryRevision != "" {
			msg += "; it routes to stable revision " + st.StableRevision + " only, so the rollout of " + st.CanaryRevision + " waits"
		}
		return v1alpha1.PhaseDegraded, v1alpha1.ReasonNack, msg + "; fix the routing objects, then the data plane's next answer counts"
	case st.CanaryRevision == "":
		msg := "revision " + st.StableRevision + " serves 100%"
		if lr := st.LastRollout; lr != nil && lr.Outcome == v1alpha1.OutcomeAborted {
			msg += "; the rollout of " + lr.Revision + " was aborted (" + lr.Reason + ": " + lr.Message + ")"
		}
		return v1alpha1.PhaseHealthy, v1alpha1.ReasonStable, msg
	case st.Pause != nil:
		return v1alpha1.PhasePaused, st.Pause.Reason, st.Pause.Message
	case s.heldByWindow || (s.routed.g == gateHeld && s.in.Observations.Window.Closed):
		w := s.in.Observations.Window
		msg := "deployment window closed (" + w.Reason + ")"
		if !w.NextChange.IsZero() {
			msg += "; opens at " + w.NextChange.UTC().Format(time.RFC3339)
		}
		return v1alpha1.PhasePaused, v1alpha1.ReasonWindowClosed, msg
	}
	i := int(*st.CurrentStepIndex)
	label := fmt.Sprintf("step %d/%d (%s)", i+1, len(s.steps)+1, s.stepLabel(i))
	if st.StepAcknowledgedAt == nil {
		switch {
		case s.routed.g == gateReady && s.replicasRouter():
			return v1alpha1.PhaseProgressing, v1alpha1.ReasonWaitingForReady, label + ": " + s.waitingForPods(s.foldAt(min(i, len(s.steps))+1))
		case s.routed.g == gateReady:
			return v1alpha1.PhaseProgressing, v1alpha1.ReasonWaitingForReady, label + ": waiting for canary replicas to be ready"
		}
		// A silent proxy holds the warm-up plan as it holds any other.
		if sn := st.Traffic.StaleNodes; sn != nil && !sn.Excluded {
			return v1alpha1.PhaseProgressing, v1alpha1.ReasonStaleProxies, label + ": " + staleMessage(sn, s.silentPolicy(), s.ackDeadline(), st.Traffic.PlanVersion)
		}
		if s.routed.g == gateWarm {
			what := warmupMessage
			if s.canaryKnown() {
				what = "adding the step's extra revisions at 0% first"
			}
			return v1alpha1.PhaseProgressing, v1alpha1.ReasonWaitingForAck, label + ": " + what + "; waiting for the data plane to acknowledge plan " + st.Traffic.PlanVersion
		}
		return v1alpha1.PhaseProgressing, v1alpha1.ReasonWaitingForAck, label + ": waiting for the data plane to acknowledge plan " + st.Traffic.PlanVersion
	}
	if i < len(s.steps) {
		stp := s.steps[i]
		ackAt := st.StepAcknowledgedAt.Time
		switch {
		case stp.kind == stepPause && stp.pause == nil:
			return v1alpha1.PhasePaused, v1alpha1.ReasonPausedByStep, label + ": waiting for promote"
		case stp.kind == stepPause:
			return v1alpha1.PhaseProgressing, v1alpha1.ReasonPausedByStep, label + ": " + remaining(ackAt.Add(*stp.pause), s.now) + " left"
		case stp.kind == stepAnalysis:
			name := "(starting)"
			if r := s.stepRun(i); r != nil {
				name = r.Name
			}
			return v1alpha1.PhaseProgressing, "AnalysisRunning", label + ": analysis run " + name + " running"
		}
	}
	return v1alpha1.PhaseProgressing, v1alpha1.ReasonStepAdvanced, label
}

// rejected reports whether the data plane rejected the plan in force.
func (s *stepper) rejected() bool {
	tr := &s.st.Traffic
	return tr.RejectedVersion != "" && tr.RejectedVersion == tr.PlanVersion
}

func remaining(until, now time.Time) string {
	d := until.Sub(now)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}

// requeue is the earliest future moment at which time alone changes
// something: a pause ends, a deadline passes, a scale-down is due, a
// window flips.
func (s *stepper) requeue() time.Duration {
	st := &s.st
	var at []time.Time
	if s.rolling() && st.Pause == nil && st.CurrentStepIndex != nil {
		i := int(*st.CurrentStepIndex)
		switch {
		case st.StepAcknowledgedAt == nil && st.StepStartedAt != nil:
			at = append(at, st.StepStartedAt.Add(s.deadline()+time.Second))
		case i < len(s.steps) && s.steps[i].pause != nil:
			at = append(at, st.StepAcknowledgedAt.Add(*s.steps[i].pause))
		}
	}
	if sd := st.ScaleDown; sd != nil {
		at = append(at, sd.At.Time)
	}
	if s.abortHolds() {
		at = append(at, st.Abort.At.Add(s.scaleDownDelay()))
	}
	for _, x := range st.ExtraRevisions {
		if x.EndsAt != nil && !x.Ended {
			at = append(at, x.EndsAt.Time)
		}
	}
	if t, ok := s.revertRetryAt(); ok {
		at = append(at, t)
	}
	if t, ok := s.staleWakeAt(); ok {
		at = append(at, t)
	}
	if w := s.in.Observations.Window; s.heldByWindow && !w.NextChange.IsZero() {
		at = append(at, w.NextChange)
	}
	var best time.Duration
	for _, t := range at {
		if d := t.Sub(s.now); d > 0 && (best == 0 || d < best) {
			best = d
		}
	}
	return best
}
