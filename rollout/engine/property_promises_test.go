package engine

// The promises of docs/engine.md and docs/api.md as properties, each checked
// at every Step of every random trajectory (property_test.go drives them).
// They judge the engine from the outside: from the plans it publishes, the
// observations it was given and the status it returned, with their own
// bookkeeping of what the data plane was told and answered.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// propExposure is what a plan sends the canary on the Rollout's hosts.
type propExposure struct {
	weight int32 // on the default route, the most of any service host
	mirror int32
	// routes are the match routes to the canary (preview, header-*, dark),
	// without the ones derived from others (affinity, fault copies).
	routes map[string]bool
	// previewHosts are extra hosts routed to the canary.
	previewHosts map[string]bool
}

func propExposureOf(spec *v1alpha1.RolloutSpec, p plan.Plan) propExposure {
	e := propExposure{routes: map[string]bool{}, previewHosts: map[string]bool{}}
	if p.Revision(plan.Canary) == "" {
		return e
	}
	for _, h := range p.Hosts {
		if !slices.Contains(spec.Service.Hosts, h.Name) {
			if h.Weight(plan.Canary) > 0 {
				e.previewHosts[h.Name] = true
			}
			continue
		}
		e.weight = max(e.weight, h.Weight(plan.Canary))
		for _, r := range h.Routes {
			if r.Mirror != nil && r.Mirror.Subset == plan.Canary {
				e.mirror = max(e.mirror, r.Mirror.Percent)
			}
			if len(r.Match) == 0 || r.Name == "affinity" || strings.HasSuffix(r.Name, "-fault") || r.Name == "fault" {
				continue
			}
			for _, d := range r.Destinations {
				if d.Subset == plan.Canary && d.Weight > 0 {
					e.routes[r.Name] = true
				}
			}
		}
	}
	return e
}

func (e propExposure) sends() bool {
	return e.weight > 0 || e.mirror > 0 || len(e.routes) > 0 || len(e.previewHosts) > 0
}

// within reports whether e sends the canary nothing that o does not.
func (e propExposure) within(o propExposure) bool {
	sub := func(a, b map[string]bool) bool {
		for k := range a {
			if !b[k] {
				return false
			}
		}
		return true
	}
	return e.weight <= o.weight && e.mirror <= o.mirror && sub(e.routes, o.routes) && sub(e.previewHosts, o.previewHosts)
}

func (e propExposure) String() string {
	return fmt.Sprintf("{weight %d mirror %d routes %v preview hosts %v}", e.weight, e.mirror,
		slices.Sorted(maps.Keys(e.routes)), slices.Sorted(maps.Keys(e.previewHosts)))
}

// propNeed is how many available canary replicas a plan's canary traffic
// takes, as docs/engine.md says: ceil(replicas × weight / 100), at least
// one for any traffic, all of them for blue/green and 100%; nothing for a
// Rollout scaled to zero.
func propNeed(spec *v1alpha1.RolloutSpec, p plan.Plan) int32 {
	e := propExposureOf(spec, p)
	if spec.Replicas == nil || *spec.Replicas == 0 || !e.sends() {
		return 0
	}
	r := *spec.Replicas
	if spec.Strategy.BlueGreen != nil || e.weight == 100 {
		return r
	}
	return max(1, (r*e.weight+99)/100)
}

// propPrevPlan is the plan published before the Step, if any.
func (c *propCtx) prevPlan() (plan.Plan, bool) {
	p, ok := c.w.plans[c.in.Rollout.Status.Traffic.PlanVersion]
	return p, ok
}

// propSameCanary is the previous plan's exposure when it routes to the same
// canary revision as p, else nothing: traffic to another revision is not
// traffic to this one.
func propSameCanary(spec *v1alpha1.RolloutSpec, prev, p plan.Plan) propExposure {
	if prev.Revision(plan.Canary) != p.Revision(plan.Canary) {
		return propExposureOf(spec, plan.Plan{})
	}
	return propExposureOf(spec, prev)
}

// Traffic to the canary never rises beyond what its available replicas
// carry: a plan that takes more replicas than the plan before it is
// published only when the Step observed that many available, and the
// canary is never scaled below what the plan in force takes.
func propCanaryCarried() propCheck {
	return func(c *propCtx) string {
		spec := &c.in.Rollout.Spec
		if spec.Replicas == nil {
			return ""
		}
		p := c.out.Plan
		need := propNeed(spec, p)
		if prev, ok := c.prevPlan(); ok && prev.Version != p.Version {
			was := int32(0)
			if prev.Revision(plan.Canary) == p.Revision(plan.Canary) {
				was = propNeed(spec, prev)
			}
			if wl := c.in.Observations.Workload; need > was && (wl == nil || wl.CanaryAvailable < need) {
				return fmt.Sprintf("published a plan that takes %d canary replicas (%s), up from %d, with workload %s",
					need, propExposureOf(spec, p), was, propJSON(wl))
			}
		}
		if rev := p.Revision(plan.Canary); rev != "" && need > 0 {
			i := slices.IndexFunc(c.out.Scale, func(s Scale) bool { return s.Revision == rev })
			if i < 0 || c.out.Scale[i].Replicas < need {
				return fmt.Sprintf("the plan in force takes %d replicas of %s, but scale is %s", need, rev, propJSON(c.out.Scale))
			}
		}
		return ""
	}
}

// No request reaches a subset before the data plane has acknowledged a plan
// that declares it (at 0%), with every plan since keeping it: otherwise a
// proxy may route to a cluster whose endpoints it does not know yet.
func propSubsetKnownFirst() propCheck {
	known := map[string]string{} // subset → revision every proxy knows
	return func(c *propCtx) string {
		prev, ok := c.prevPlan()
		if dp := c.in.Observations.DataPlane; ok && dp.State == AckAcknowledged && dp.Version == prev.Version {
			known = map[string]string{}
			for _, s := range prev.Subsets {
				known[s.Name] = s.Revision
			}
		}
		p := c.out.Plan
		rev := p.Revision(plan.Canary)
		bad := ""
		if propExposureOf(&c.in.Rollout.Spec, p).sends() && known[plan.Canary] != rev {
			bad = fmt.Sprintf("plan %s sends canary %s traffic (%s), but no acknowledged plan declared that subset (known: %v)",
				p.Version, rev, propExposureOf(&c.in.Rollout.Spec, p), known)
		}
		for name, r := range known {
			if p.Revision(name) != r {
				delete(known, name)
			}
		}
		return bad
	}
}

// propTargetWeight is the canary weight the current step asks for.
func propTargetWeight(spec *v1alpha1.RolloutSpec, st *v1alpha1.RolloutStatus) int32 {
	if st.CanaryRevision == "" || st.Abort != nil || st.CurrentStepIndex == nil {
		return 0
	}
	steps, err := compile(spec.Strategy)
	if err != nil {
		return 0
	}
	i := int(*st.CurrentStepIndex)
	if i >= len(steps) {
		return 100
	}
	return fold(steps, i+1).weight
}

// A step that lowers the weight never raises it: the canary's weight is
// never above both the weight in force before the Step and the weight the
// current step asks for.
func propWeightsFollowSteps() propCheck {
	return func(c *propCtx) string {
		spec := &c.in.Rollout.Spec
		p := c.out.Plan
		prev, _ := c.prevPlan()
		was := propSameCanary(spec, prev, p).weight
		want := propTargetWeight(spec, &c.out.Status)
		if got := propExposureOf(spec, p).weight; got > max(was, want) {
			return fmt.Sprintf("canary weight %d%%, above both the %d%% in force and the %d%% step %v asks for",
				got, was, want, propDeref(c.out.Status.CurrentStepIndex))
		}
		return ""
	}
}

// A closed window or a pause never raises the canary's traffic, and never
// holds up an abort.
func propFreezeHolds() propCheck {
	sent := map[string]bool{}
	return func(c *propCtx) string {
		spec := &c.in.Rollout.Spec
		prevSt, st := &c.in.Rollout.Status, &c.out.Status
		fresh := false // the last command's ID is new
		for _, cmd := range c.in.Observations.Commands {
			fresh = cmd.ID != "" && !sent[cmd.ID]
			sent[cmd.ID] = true
		}
		cmds := c.in.Observations.Commands
		if n := len(cmds); n > 0 && cmds[n-1].Kind == v1alpha1.CommandAbort && fresh &&
			st.CanaryRevision != "" && st.Abort == nil {
			return fmt.Sprintf("abort %s (window closed: %v) left the rollout of %s running: %s", cmds[len(cmds)-1].ID, c.in.Observations.Window.Closed, st.CanaryRevision, st.Message)
		}
		paused := prevSt.Pause != nil && st.Pause != nil && prevSt.CanaryRevision == st.CanaryRevision
		if !c.in.Observations.Window.Closed && !paused {
			return ""
		}
		prev, ok := c.prevPlan()
		if !ok {
			return ""
		}
		p := c.out.Plan
		before, after := propSameCanary(spec, prev, p), propExposureOf(spec, p)
		if !after.within(before) {
			return fmt.Sprintf("window closed %v, paused %v: canary traffic rose from %s to %s", c.in.Observations.Window.Closed, paused, before, after)
		}
		return ""
	}
}

// A command ID is applied at most once, whatever arrives in between;
// a command without an ID is applied every time.
func propCommandOnce() propCheck {
	applied := map[string]int{}
	return func(c *propCtx) string {
		want := 0
		for _, cmd := range c.in.Observations.Commands {
			if cmd.ID == "" {
				want++
				continue
			}
			if at, ok := applied[cmd.ID]; ok {
				_ = at
				continue
			}
			applied[cmd.ID] = c.i
			want++
		}
		got := 0
		for _, e := range c.out.Events {
			if strings.HasPrefix(e.Reason, "Command") {
				got++
			}
		}
		if got != want {
			return fmt.Sprintf("commands %s: %d applied, want %d (IDs applied before: %v)",
				propJSON(c.in.Observations.Commands), got, want, slices.Sorted(maps.Keys(applied)))
		}
		return ""
	}
}

// Pauses and analysis windows start at acknowledgement: a step counts as
// acknowledged only at the Step that sees the data plane acknowledge the
// plan in force, a timed pause (or a dark release's least duration) is
// left no earlier than its duration after that, and a step's analysis run
// starts only once its plan is acknowledged. The status went through JSON
// before every Step, as after a restart.
func propClockStartsAtAck() propCheck {
	return func(c *propCtx) string {
		prevSt, st := &c.in.Rollout.Status, &c.out.Status
		now := c.in.Now
		newAck := st.StepAcknowledgedAt != nil && (prevSt.StepAcknowledgedAt == nil ||
			!propSameIndex(prevSt.CurrentStepIndex, st.CurrentStepIndex) || prevSt.Starts != st.Starts)
		if newAck {
			if want := v1alpha1.NewTimestamp(now); !st.StepAcknowledgedAt.Equal(&want) {
				return fmt.Sprintf("step %v acknowledged at %s, in a Step at %s", propDeref(st.CurrentStepIndex), st.StepAcknowledgedAt.Time, now)
			}
			if st.Traffic.AcknowledgedVersion != c.out.Plan.Version {
				return fmt.Sprintf("step %v counted as acknowledged, but the plan in force %s is not (acknowledged: %q)",
					propDeref(st.CurrentStepIndex), c.out.Plan.Version, st.Traffic.AcknowledgedVersion)
			}
		}
		for _, a := range c.out.Actions {
			if a.Kind == ActionStartAnalysis && a.Run.Kind != v1alpha1.AnalysisBackgroundKind &&
				(st.StepAcknowledgedAt == nil || st.Traffic.AcknowledgedVersion != c.out.Plan.Version) {
				return fmt.Sprintf("analysis run %s started before its step's plan was acknowledged", a.Run.Name)
			}
		}
		// Leaving a timed step on time alone.
		if prevSt.CurrentStepIndex == nil || prevSt.StepAcknowledgedAt == nil || st.CurrentStepIndex == nil ||
			prevSt.Starts != st.Starts || st.CanaryRevision != prevSt.CanaryRevision ||
			*st.CurrentStepIndex <= *prevSt.CurrentStepIndex || len(c.in.Observations.Commands) > 0 {
			return ""
		}
		steps, err := compile(c.in.Rollout.Spec.Strategy)
		if err != nil || int(*prevSt.CurrentStepIndex) >= len(steps) || prevSt.StepsHash != hashStrategy(c.in.Rollout.Spec.Strategy) {
			return ""
		}
		stp := steps[*prevSt.CurrentStepIndex]
		if stp.pause != nil && now.Before(prevSt.StepAcknowledgedAt.Add(*stp.pause)) {
			return fmt.Sprintf("left step %d (%s) at %s, %s after its acknowledgement at %s",
				*prevSt.CurrentStepIndex+1, stp, now, now.Sub(prevSt.StepAcknowledgedAt.Time), prevSt.StepAcknowledgedAt.Time)
		}
		return ""
	}
}

func propSameIndex(a, b *int32) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Blue/green preview and a dark release send no unmatched production
// traffic to the new revision before the switch (blue/green's setWeight
// 100, the dark release's first canary step).
func propNoUnmatchedBeforeSwitch() propCheck {
	return func(c *propCtx) string {
		spec := &c.in.Rollout.Spec
		st := &c.out.Status
		var at int
		switch steps, _ := compile(spec.Strategy); {
		case spec.Strategy.BlueGreen != nil:
			at = slices.IndexFunc(steps, func(s step) bool { return s.kind == stepWeight })
		case spec.Strategy.DarkRelease != nil:
			at = 2
		default:
			return ""
		}
		if st.CanaryRevision == "" || (st.CurrentStepIndex != nil && int(*st.CurrentStepIndex) >= at) {
			return ""
		}
		for _, h := range c.out.Plan.Hosts {
			if !slices.Contains(spec.Service.Hosts, h.Name) {
				continue
			}
			r := propServe(h, propRequest{})
			if r == nil {
				return fmt.Sprintf("host %q serves no route to a request without headers", h.Name)
			}
			if len(r.Match) > 0 && r.Name != "fault" {
				// The user's own match takes requests without a header
				// (present: false): they are matched, not unmatched.
				continue
			}
			for _, d := range r.Destinations {
				if d.Subset == plan.Canary && d.Weight > 0 {
					return fmt.Sprintf("before the switch (step %v of %d), host %q sends %d%% of unmatched requests to the canary by route %q",
						propDeref(st.CurrentStepIndex), at, h.Name, d.Weight, r.Name)
				}
			}
			if r.Mirror != nil && r.Mirror.Subset == plan.Canary {
				return fmt.Sprintf("before the switch, host %q mirrors unmatched requests to the canary", h.Name)
			}
		}
		return ""
	}
}

// A NACK is blamed on the revision whose routing was rejected: a rejected
// plan that routes to stable only never aborts or pauses the canary, and a
// rejected plan with the canary subset stops its rollout.
func propNackAttributed() propCheck {
	return func(c *propCtx) string {
		dp := c.in.Observations.DataPlane
		prevSt, st := &c.in.Rollout.Status, &c.out.Status
		prev, ok := c.prevPlan()
		if !ok || dp.State != AckRejected || dp.Version != prev.Version || prevSt.Traffic.RejectedVersion == dp.Version {
			return ""
		}
		blamed := (st.Abort != nil && st.Abort.Reason == v1alpha1.ReasonNack && prevSt.Abort == nil) ||
			(st.Pause != nil && st.Pause.Reason == v1alpha1.ReasonNack && (prevSt.Pause == nil || prevSt.Pause.Reason != v1alpha1.ReasonNack))
		rev := prev.Revision(plan.Canary)
		if rev == "" || rev != st.CanaryRevision {
			if blamed {
				return fmt.Sprintf("the rejected plan %s routes to %v only, but the rollout of %s was stopped: %s",
					prev.Version, propJSON(prev.Subsets), st.CanaryRevision, st.Message)
			}
			return ""
		}
		quiet := len(c.in.Observations.Commands) == 0 && c.in.Rollout.Generation == prevSt.ObservedGeneration
		if quiet && prevSt.Abort == nil && st.Abort == nil && (st.Pause == nil || st.Pause.Reason != v1alpha1.ReasonNack) {
			return fmt.Sprintf("the rejected plan %s routes to canary %s, but its rollout goes on: %s %q", prev.Version, rev, st.Phase, st.Message)
		}
		return ""
	}
}

// A plan the data plane rejected never reads as healthy.
func propRejectedNotHealthy() propCheck {
	return func(c *propCtx) string {
		st := &c.out.Status
		if st.Traffic.RejectedVersion == "" || st.Traffic.RejectedVersion != c.out.Plan.Version {
			return ""
		}
		for _, cond := range st.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Status == "True" {
				return fmt.Sprintf("plan %s rejected (%s), but Ready=True (%s)", c.out.Plan.Version, st.Traffic.Rejection, cond.Reason)
			}
		}
		if st.Phase == v1alpha1.PhaseHealthy {
			return fmt.Sprintf("plan %s rejected, but phase Healthy", c.out.Plan.Version)
		}
		return ""
	}
}

// propFraction is a random part of a second: real clocks are not whole
// seconds, and the API server keeps whole seconds of a metav1.Time.
func (w *propWorld) propFraction() time.Duration {
	if w.chance(0.5) {
		return 0
	}
	return time.Duration(w.r.Int64N(int64(time.Second)))
}

// propRevertAskedOnce: the Git revert is asked for only with an automatic
// abort recorded in status.gitRevert, at most one attempt at a time, each
// counted; a failed attempt is asked again no sooner than its backoff, and
// a pending revert is never forgotten without an answer or a newer push.
func propRevertAskedOnce() propCheck {
	return func(c *propCtx) string {
		var asks []Action
		for _, a := range c.out.Actions {
			if a.Kind == ActionGitRevert {
				asks = append(asks, a)
			}
		}
		before, after := c.pre.Rollout.Status.GitRevert, c.out.Status.GitRevert
		if len(asks) > 1 {
			return fmt.Sprintf("%d revert attempts asked in one Step", len(asks))
		}
		if len(asks) == 1 {
			a := asks[0].Revert
			switch {
			case after == nil || after.Phase != v1alpha1.GitRevertPending:
				return fmt.Sprintf("revert asked without a pending status.gitRevert: %+v", after)
			case a.FailedRevision != after.FailedRevision || a.StableRevision != after.StableRevision:
				return fmt.Sprintf("revert asked for %s->%s, status records %s->%s", a.FailedRevision, a.StableRevision, after.FailedRevision, after.StableRevision)
			case after.Attempts != after.Failures+1:
				return fmt.Sprintf("asked, but attempts %d, failures %d", after.Attempts, after.Failures)
			case after.NextAttemptAt != nil && after.NextAttemptAt.After(c.pre.Now):
				return fmt.Sprintf("asked before the backoff ended (%s)", after.NextAttemptAt)
			}
			if before != nil && before.Phase == v1alpha1.GitRevertPending && before.FailedRevision == after.FailedRevision &&
				before.Attempts > before.Failures && c.pre.Observations.GitRevert == nil {
				return "asked again while an attempt was under way and nothing was answered"
			}
		}
		if before != nil && before.Phase == v1alpha1.GitRevertPending {
			if after == nil {
				return "a pending revert vanished from status"
			}
			if after.FailedRevision == before.FailedRevision && after.Phase == v1alpha1.GitRevertDone &&
				after.Outcome != "superseded" && after.Outcome != "cancelled" && c.pre.Observations.GitRevert == nil {
				return fmt.Sprintf("revert done (%s) without an answer", after.Outcome)
			}
		}
		return ""
	}
}

// An aborted canary keeps the pods the plan before the abort took, until
// the data plane acknowledged the abort's plan or scaleDownDelaySeconds
// passed: proxies that have not applied the abort still send it requests.
// Checked while the spec stays as it was at the abort.
func propAbortKeepsCanary() propCheck {
	var (
		prev plan.Plan
		rev  string
		at   time.Time
		gen  int64
	)
	return func(c *propCtx) string {
		spec, st := &c.in.Rollout.Spec, &c.out.Status
		if spec.Replicas == nil || st.Abort == nil || st.CanaryRevision == "" {
			rev = ""
			return ""
		}
		if c.in.Rollout.Status.Abort == nil {
			// Decided at this Step: the plan before it is what proxies
			// that have not seen the abort route by.
			p, ok := c.prevPlan()
			if !ok || p.Revision(plan.Canary) != st.CanaryRevision {
				rev = ""
				return ""
			}
			prev, rev, at, gen = p, st.CanaryRevision, st.Abort.At.Time, c.in.Rollout.Generation
		}
		if rev != st.CanaryRevision || !st.Abort.At.Time.Equal(at) || c.in.Rollout.Generation != gen {
			return ""
		}
		if tr := st.Traffic; tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion {
			rev = ""
			return ""
		}
		delay := 30 * time.Second
		if d := spec.ScaleDownDelaySeconds; d != nil {
			delay = time.Duration(*d) * time.Second
		}
		if !c.in.Now.Before(at.Add(delay)) {
			return ""
		}
		need := propNeed(spec, prev)
		i := slices.IndexFunc(c.out.Scale, func(s Scale) bool { return s.Revision == rev })
		if need > 0 && (i < 0 || c.out.Scale[i].Replicas < need) {
			return fmt.Sprintf("aborted canary %s scaled to %s before the abort's plan was acknowledged; the plan before it took %d replicas (%s)",
				rev, propJSON(c.out.Scale), need, propExposureOf(spec, prev))
		}
		return ""
	}
}
