package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// stepper holds one Step's working state. Each method is one phase of the
// step, run in the order Step lists; they communicate only through st.
type stepper struct {
	in      Input
	ro      *v1alpha1.Rollout
	st      v1alpha1.RolloutStatus
	steps   []step
	now     time.Time
	desired string
	// stepsHash identifies the compiled program (status.stepsHash).
	stepsHash string

	// heldByWindow is set when a step could advance but the window is closed.
	heldByWindow bool
	// routed is what finish publishes, for the summary.
	routed *routing

	stops   []Action
	starts  []Action
	reverts []Action
	events  []Event
}

func newStepper(in Input) (*stepper, error) {
	if in.Rollout == nil {
		return nil, errors.New("engine: no rollout")
	}
	steps, err := compile(in.Rollout.Spec.Strategy)
	if err != nil {
		return nil, fmt.Errorf("engine: rollout %s: %w", in.Rollout.Name, err)
	}
	desired, err := DesiredRevision(&in.Rollout.Spec)
	if err != nil {
		return nil, fmt.Errorf("engine: rollout %s: %w", in.Rollout.Name, err)
	}
	return &stepper{
		in:        in,
		ro:        in.Rollout,
		st:        *in.Rollout.Status.DeepCopy(),
		steps:     steps,
		now:       in.Now,
		desired:   desired,
		stepsHash: hashStrategy(in.Rollout.Spec.Strategy),
	}, nil
}

// rolling reports whether a rollout is in progress and not aborted.
func (s *stepper) rolling() bool {
	return s.st.CanaryRevision != "" && s.st.Abort == nil
}

func (s *stepper) event(t EventType, reason, format string, args ...any) {
	s.events = append(s.events, Event{Type: t, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// observeSpec compares the desired revision with the status: the first
// revision becomes stable, a new one starts a rollout, a newer one restarts
// it, and the stable one ends any rollout at once.
func (s *stepper) observeSpec() {
	st, spec := &s.st, &s.ro.Spec
	st.ObservedGeneration = s.ro.Generation
	if g := s.in.Observations.Git; g != nil {
		st.Git = g.DeepCopy()
	}
	switch {
	case st.StableRevision == "":
		st.StableRevision = s.desired
		st.StableBackend = spec.Backend.DeepCopy()
		s.event(EventNormal, v1alpha1.ReasonStable, "revision %s serves 100%%", s.desired)
	case s.desired == st.StableRevision:
		if st.CanaryRevision != "" {
			dropped := st.CanaryRevision
			s.recordOutcome(v1alpha1.OutcomeRolledBack)
			s.endRollout("spec set back to the stable revision")
			s.event(EventNormal, v1alpha1.ReasonRolledBackToStable,
				"spec set back to stable revision %s: 100%% to stable, canary %s dropped", st.StableRevision, dropped)
		}
		// Endpoints may change without a new version.
		st.StableBackend = spec.Backend.DeepCopy()
	case s.desired != st.CanaryRevision:
		if st.CanaryRevision != "" {
			s.event(EventNormal, v1alpha1.ReasonSuperseded,
				"revision %s superseded by %s: starting again from stable %s", st.CanaryRevision, s.desired, st.StableRevision)
			s.recordOutcome(v1alpha1.OutcomeSuperseded)
			s.endRollout("superseded by revision " + s.desired)
		}
		s.startRollout()
	case s.rolling() && st.StepsHash != s.stepsHash:
		// The old position means nothing in the new steps: start again.
		s.stopRuns(func(*v1alpha1.AnalysisRunStatus) bool { return true }, "steps edited")
		s.restart()
		s.event(EventNormal, "StepsChanged", "steps of the rollout edited: starting revision %s again from step 1", st.CanaryRevision)
	}
	s.syncSpecPause()
}

func (s *stepper) syncSpecPause() {
	st := &s.st
	switch {
	case s.ro.Spec.Paused && s.rolling() && st.Pause == nil:
		st.Pause = &v1alpha1.PauseStatus{Reason: v1alpha1.ReasonPausedBySpec, Message: "paused by spec.paused", Since: *mt(s.now)}
		s.event(EventNormal, v1alpha1.ReasonPausedBySpec, "paused by spec.paused")
	case !s.ro.Spec.Paused && st.Pause != nil && st.Pause.Reason == v1alpha1.ReasonPausedBySpec:
		st.Pause = nil
		s.event(EventNormal, "Resumed", "spec.paused cleared: resuming")
	}
}

func (s *stepper) startRollout() {
	st := &s.st
	s.supersedeRevert()
	st.CanaryRevision = s.desired
	st.Attempt = 0
	st.Pause, st.Abort = nil, nil
	s.restart()
	s.event(EventNormal, v1alpha1.ReasonNewRevision,
		"new revision %s: rolling out from stable %s in %d steps, promotion included", s.desired, st.StableRevision, len(s.steps)+1)
}

// recordOutcome remembers how the current rollout ends. An aborted rollout
// keeps its abort as the outcome, whatever ends it afterwards.
func (s *stepper) recordOutcome(o v1alpha1.Outcome) {
	st := &s.st
	out := &v1alpha1.RolloutOutcome{Revision: st.CanaryRevision, Outcome: o, At: *mt(s.now)}
	if a := st.Abort; a != nil {
		out.Outcome, out.Reason, out.Message, out.At = v1alpha1.OutcomeAborted, a.Reason, a.Message, a.At
	}
	st.LastRollout = out
}

// restart puts the rollout before step 1 with a fresh run generation.
func (s *stepper) restart() {
	st := &s.st
	st.Starts++
	st.StepsHash = s.stepsHash
	st.CurrentStepIndex = nil
	st.StepCount = int32(len(s.steps))
	st.StepStartedAt, st.StepAcknowledgedAt = nil, nil
	st.PromoteFull = false
	st.Analysis = nil
	st.Traffic.Rejection, st.Traffic.RejectedVersion = "", ""
	// The count was of the old program's steps. The plan stays in force
	// until this Step publishes; the canary subset stays known if it is
	// still the same revision.
	st.Traffic.RoutedSteps = nil
}

// endRollout drops the canary without promoting it.
func (s *stepper) endRollout(why string) {
	st := &s.st
	s.stopRuns(func(*v1alpha1.AnalysisRunStatus) bool { return true }, why)
	st.CanaryRevision = ""
	st.StepsHash = ""
	st.CurrentStepIndex = nil
	st.StepCount = 0
	st.StepStartedAt, st.StepAcknowledgedAt = nil, nil
	st.Pause, st.Abort = nil, nil
	st.PromoteFull = false
	st.ExtraRevisions = nil
}

// stopRuns terminates unfinished runs selected by which.
func (s *stepper) stopRuns(which func(*v1alpha1.AnalysisRunStatus) bool, why string) {
	for i := range s.st.Analysis {
		r := &s.st.Analysis[i]
		if r.Phase.Completed() || r.Terminated || !which(r) {
			continue
		}
		r.Terminated = true
		r.CompletedAt = mt(s.now)
		r.Message = "stopped: " + why
		s.stops = append(s.stops, Action{Kind: ActionStopAnalysis, Run: runOf(r)})
	}
}

func runOf(r *v1alpha1.AnalysisRunStatus) *AnalysisRun {
	return &AnalysisRun{Name: r.Name, Kind: r.Kind, Templates: r.Templates, Args: r.Args}
}

// abort sends everything back to stable. Aborts are never held by windows
// or pauses.
func (s *stepper) abort(reason, msg string, automatic bool) {
	st := &s.st
	keep := s.canaryPublished()
	st.Abort = &v1alpha1.AbortStatus{Reason: reason, Message: msg, At: *mt(s.now), Automatic: automatic}
	if keep > 0 {
		st.Abort.KeepCanaryReplicas = &keep
	}
	st.Pause = nil
	s.stopRuns(func(*v1alpha1.AnalysisRunStatus) bool { return true }, "rollout aborted")
	s.event(EventWarning, reason, "rollout of %s aborted: %s; 100%% to stable %s", st.CanaryRevision, msg, st.StableRevision)
	if automatic && s.ro.Spec.Rollback.GitRevert {
		s.requestRevert()
	}
}

func (s *stepper) pause(reason, msg string) {
	s.st.Pause = &v1alpha1.PauseStatus{Reason: reason, Message: msg, Since: *mt(s.now)}
	s.event(EventWarning, reason, "rollout paused: %s", msg)
}

// canaryPublished is the replicas the plan last published takes of the
// canary revision (status.traffic summarises that plan).
func (s *stepper) canaryPublished() int32 {
	st := &s.st
	if s.ro.Spec.Replicas == nil || st.CanaryRevision == "" || s.replicasRouter() {
		return 0
	}
	tr := &st.Traffic
	if !slices.ContainsFunc(tr.Subsets, func(x v1alpha1.SubsetStatus) bool {
		return x.Name == plan.Canary && x.Revision == st.CanaryRevision
	}) {
		return 0
	}
	t := traffic{active: true, weight: tr.CanaryWeight, mirror: tr.MirrorPercent, full: tr.CanaryWeight == 100}
	for _, name := range tr.Routes {
		t.routes = append(t.routes, matchRoute{name: name})
	}
	if bg := s.ro.Spec.Strategy.BlueGreen; bg != nil {
		// Blue/green publishes its preview whenever the canary subset
		// is in the plan; status.traffic does not list preview hosts.
		t.preview = &bg.Preview
	}
	return s.need(t)
}

// scaleDownDelay is how long a revision that clients may still be routed
// to keeps its pods after traffic left it: spec.scaleDownDelaySeconds,
// 30 s when absent.
func (s *stepper) scaleDownDelay() time.Duration {
	if d := s.ro.Spec.ScaleDownDelaySeconds; d != nil {
		return time.Duration(*d) * time.Second
	}
	return 30 * time.Second
}

// enter starts step i (len(steps) is promotion).
func (s *stepper) enter(i int) {
	st := &s.st
	idx := int32(i)
	st.CurrentStepIndex = &idx
	st.StepStartedAt = mt(s.now)
	st.StepAcknowledgedAt = nil
	s.event(EventNormal, v1alpha1.ReasonStepAdvanced, "step %d/%d: %s", i+1, len(s.steps)+1, s.stepLabel(i))
}

func (s *stepper) stepLabel(i int) string {
	if i >= len(s.steps) {
		return "promote to 100%"
	}
	return s.steps[i].String()
}

// observeAnalysis copies run states into status and reacts to runs that
// have just finished. A run's phase in status is how the engine remembers it
// already reacted, so a repeated observation changes nothing.
func (s *stepper) observeAnalysis() {
	for _, o := range s.in.Observations.Analysis {
		r := s.run(o.Name)
		if r == nil || r.Terminated || r.Phase.Completed() {
			// A finished run's verdict is final; a lagging report of an
			// earlier state must not undo it.
			continue
		}
		was := r.Phase
		r.Phase, r.Message = o.Phase, untrusted.Text(o.Message, maxOutsideText)
		if o.Metrics != nil {
			r.Metrics = append([]v1alpha1.MetricSummary(nil), o.Metrics...)
		}
		if o.Phase.Completed() && r.CompletedAt == nil {
			r.CompletedAt = mt(s.now)
		}
		if !was.Completed() && o.Phase.Completed() {
			s.onRunCompleted(r)
		}
	}
}

func (s *stepper) run(name string) *v1alpha1.AnalysisRunStatus {
	for i := range s.st.Analysis {
		if s.st.Analysis[i].Name == name {
			return &s.st.Analysis[i]
		}
	}
	return nil
}

func (s *stepper) onRunCompleted(r *v1alpha1.AnalysisRunStatus) {
	if !s.rolling() {
		return
	}
	detail := r.Message
	if detail == "" {
		detail = "no detail"
	}
	switch r.Phase {
	case v1alpha1.AnalysisSuccessful:
		s.event(EventNormal, "AnalysisSuccessful", "analysis run %s succeeded", r.Name)
	case v1alpha1.AnalysisFailed, v1alpha1.AnalysisError:
		msg := fmt.Sprintf("analysis run %s %s: %s", r.Name, phaseWord(r.Phase), detail)
		if s.ro.Spec.Rollback.OnAnalysisFailure == v1alpha1.ActionPause {
			s.pause(v1alpha1.ReasonAnalysisFailed, msg+"; promote to continue, or abort")
			return
		}
		s.abort(v1alpha1.ReasonAnalysisFailed, msg, true)
	case v1alpha1.AnalysisInconclusive:
		s.pause(v1alpha1.ReasonInconclusive,
			fmt.Sprintf("analysis run %s inconclusive: %s; promote to continue, or abort", r.Name, detail))
	}
}

func phaseWord(p v1alpha1.AnalysisPhase) string {
	if p == v1alpha1.AnalysisError {
		return "errored"
	}
	return "failed"
}

// observeDataPlane records acknowledgement or rejection of the last
// published plan. Answers about older versions are stale and ignored.
func (s *stepper) observeDataPlane() {
	dp, tr := s.in.Observations.DataPlane, &s.st.Traffic
	if dp.Version == "" || dp.Version != tr.PlanVersion || s.replicasRouter() {
		// The replicas router's data plane is its pods (replicas.go).
		return
	}
	dp = s.judgeStale(dp)
	switch dp.State {
	case AckAcknowledged:
		tr.AcknowledgedVersion = dp.Version
		for i := range tr.Subsets {
			tr.Subsets[i].Acknowledged = true
		}
		// The data plane takes what it is sent again.
		tr.RejectedVersion, tr.Rejection = "", ""
	case AckRejected:
		if tr.RejectedVersion == dp.Version {
			return
		}
		// The text is a proxy's (or a router's): bounded and without
		// control characters before it reaches status, Events and screens.
		text := untrusted.Text(dp.Message, maxOutsideText)
		tr.RejectedVersion, tr.Rejection = dp.Version, text
		msg := fmt.Sprintf("data plane rejected plan %s: %s", dp.Version, text)
		switch {
		case !s.rolling():
			s.event(EventWarning, v1alpha1.ReasonNack, "%s", msg)
		case !s.publishedCanary():
			// The rejected plan routes to stable only (the rollout has not
			// started, or is held before its first step): the canary is
			// not what the data plane refused.
			s.event(EventWarning, v1alpha1.ReasonNack, "%s; the plan routes to stable revision %s only, so the rollout of %s is not blamed",
				msg, s.st.StableRevision, s.st.CanaryRevision)
		case s.ro.Spec.Rollback.OnNack == v1alpha1.ActionPause:
			s.pause(v1alpha1.ReasonNack, msg)
		default:
			s.abort(v1alpha1.ReasonNack, msg, true)
		}
	}
}

// publishedCanary reports whether the published plan has the canary
// revision's subset.
func (s *stepper) publishedCanary() bool {
	for _, sub := range s.st.Traffic.Subsets {
		if sub.Name == plan.Canary && sub.Revision == s.st.CanaryRevision {
			return true
		}
	}
	return false
}

// maxOutsideText bounds text from outside (NACK messages, analysis
// messages that quote Prometheus) kept in status.
const maxOutsideText = 1024

func (s *stepper) deadline() time.Duration {
	if d := s.ro.Spec.ProgressDeadlineSeconds; d != nil {
		return time.Duration(*d) * time.Second
	}
	return 600 * time.Second
}

// checkDeadline aborts a step that waited too long for the data plane or
// the workload. Pauses and analysis have bounds of their own.
func (s *stepper) checkDeadline() {
	st := &s.st
	if !s.rolling() || st.Pause != nil || st.CurrentStepIndex == nil || st.StepAcknowledgedAt != nil || st.StepStartedAt == nil {
		return
	}
	s.refreshAck()
	if st.StepAcknowledgedAt != nil {
		return
	}
	r := s.routing()
	if r.g == gateHeld || buildPlan(s.ro, st, r.t).Version != st.Traffic.PlanVersion {
		// A closed window is not the data plane's fault; and a plan about
		// to be published gets the whole deadline (finish).
		return
	}
	if waited := s.now.Sub(st.StepStartedAt.Time); waited > s.deadline() {
		i := int(*st.CurrentStepIndex)
		what := "acknowledged by the data plane"
		switch {
		case r.g == gateReady && s.replicasRouter():
			what = "ready (" + s.waitingForPods(s.foldAt(min(i, len(s.steps))+1)) + ")"
		case r.g == gateReady:
			what = "ready (canary replicas not available)"
		case r.g == gateWarm:
			what = "started (the data plane did not acknowledge the canary subset)"
		}
		s.abort(v1alpha1.ReasonDeadline,
			fmt.Sprintf("step %d (%s) not %s within %s", i+1, s.stepLabel(i), what, s.deadline()), true)
	}
}

// advance moves through every step that is complete, as far as windows and
// pauses allow. Several steps may complete at one time (a zero pause, a step
// whose plan was already acknowledged).
func (s *stepper) advance() {
	st := &s.st
	for guard := 0; guard <= len(s.steps)+2; guard++ {
		if !s.rolling() || st.Pause != nil {
			return
		}
		s.refreshAck()
		if st.CurrentStepIndex == nil {
			if s.in.Observations.Window.Closed {
				s.heldByWindow = true
				return
			}
			s.enter(0)
			continue
		}
		i := int(*st.CurrentStepIndex)
		if !s.stepComplete(i) {
			return
		}
		if s.in.Observations.Window.Closed {
			s.heldByWindow = true
			return
		}
		if i >= len(s.steps) {
			s.promote()
			return
		}
		s.enter(i + 1)
	}
}

// refreshAck marks the current step acknowledged when the data plane has
// acknowledged the last published plan and that is the plan the step wants
// (not one held back waiting for the canary to be ready). An older
// acknowledged version says nothing: a newer plan was published since, and
// the proxies may already have it.
//
// With the replicas router the pods are the acknowledgement: the step is
// acknowledged once routing lets its traffic through, which it does only
// when both revisions' pods for it are available.
func (s *stepper) refreshAck() {
	st := &s.st
	tr := &st.Traffic
	if s.replicasRouter() && s.rolling() && st.CurrentStepIndex != nil && st.StepAcknowledgedAt == nil && s.routing().g == gateNone {
		ack := v1alpha1.NewTimestamp(s.now)
		st.StepAcknowledgedAt = &ack
		return
	}
	if st.CurrentStepIndex == nil || st.StepAcknowledgedAt != nil || tr.AcknowledgedVersion == "" || tr.AcknowledgedVersion != tr.PlanVersion || s.replicasRouter() {
		return
	}
	r := s.routing()
	if r.g != gateNone {
		return
	}
	if p := buildPlan(s.ro, st, r.t); p.Version == tr.AcknowledgedVersion {
		ack := v1alpha1.NewTimestamp(s.now)
		st.StepAcknowledgedAt = &ack
	}
}

func (s *stepper) stepComplete(i int) bool {
	st := &s.st
	if st.StepAcknowledgedAt == nil {
		return false
	}
	if i >= len(s.steps) {
		return true
	}
	ackAt := st.StepAcknowledgedAt.Time
	switch stp := s.steps[i]; stp.kind {
	case stepPause:
		return stp.pause != nil && !s.now.Before(ackAt.Add(*stp.pause))
	case stepAnalysis:
		r := s.stepRun(i)
		if r == nil || r.Phase != v1alpha1.AnalysisSuccessful {
			return false
		}
		return stp.pause == nil || !s.now.Before(ackAt.Add(*stp.pause))
	}
	return true
}

// promote makes the canary the stable revision.
func (s *stepper) promote() {
	st, spec := &s.st, &s.ro.Spec
	old, rev := st.StableRevision, st.CanaryRevision
	s.stopRuns(func(*v1alpha1.AnalysisRunStatus) bool { return true }, "rollout promoted")
	s.recordOutcome(v1alpha1.OutcomePromoted)
	st.StableRevision = rev
	st.StableBackend = spec.Backend.DeepCopy()
	if spec.Replicas != nil && old != rev {
		st.ScaleDown = &v1alpha1.ScaleDownStatus{Revision: old, At: *mt(s.now.Add(s.scaleDownDelay()))}
		if s.replicasRouter() {
			// Every pod kept takes requests: keep what the plan in force
			// runs, not more.
			n := splitOf(spec, s.foldAt(s.inForce())).stable
			st.ScaleDown.Replicas = &n
			if n == 0 {
				st.ScaleDown = nil
			}
		}
	}
	st.CanaryRevision = ""
	st.StepsHash = ""
	st.CurrentStepIndex = nil
	st.StepCount = 0
	st.StepStartedAt, st.StepAcknowledgedAt = nil, nil
	st.PromoteFull = false
	st.Pause = nil
	s.event(EventNormal, v1alpha1.ReasonPromoted, "revision %s promoted: serves 100%% (was %s)", rev, old)
}

// gate says why a step's traffic is held back.
type gate uint8

const (
	gateNone gate = iota
	// gateReady: the canary's replicas are not available yet.
	gateReady
	// gateWarm: the data plane has not yet acknowledged the canary subset.
	// Adding a cluster and weighting it in one update lets proxies route to
	// it before they know its endpoints (Envoy answers 503, gRPC fails the
	// RPC), so the subset is added at 0% first.
	gateWarm
	// gateHeld: a closed deployment window or a pause freezes the routing
	// in force.
	gateHeld
)

// routedNone is the routing of no rollout: 100% to stable, no canary subset.
const routedNone = -1

// routing is what the plan routes: the traffic of the first k steps of the
// program (len(steps)+1: promotion), and the gate that holds the current
// step's traffic back, if any.
type routing struct {
	t traffic
	k int
	g gate
}

// foldAt is the traffic of the first k steps; len(steps)+1 is promotion.
func (s *stepper) foldAt(k int) traffic { return foldRouted(s.steps, k) }

// inForce is how many steps the published plan folds in.
func (s *stepper) inForce() int {
	k := s.st.Traffic.RoutedSteps
	if k == nil || !s.rolling() {
		return routedNone
	}
	return min(max(int(*k), 0), len(s.steps)+1)
}

// routing decides what the plan routes now: the current step's traffic
// when every gate lets it through, otherwise the traffic in force (or, for
// a rollout not routed yet, the canary subset at 0%). Traffic therefore
// never goes past what the last carried plan allowed, whatever moved the
// step (advancing, promote, promote --full, retry, resume):
//
//   - a closed window or a pause keeps the plan in force;
//   - the canary gets more traffic only once its available replicas carry
//     it (lowering traffic is never held back);
//   - the canary gets any traffic only once the data plane knows its subset.
func (s *stepper) routing() routing {
	st := &s.st
	if !s.rolling() || st.CurrentStepIndex == nil {
		// Not started (window closed, spec.paused) routes like no rollout.
		return routing{k: routedNone}
	}
	k := min(int(*st.CurrentStepIndex), len(s.steps)) + 1
	target := s.foldAt(k)
	f := s.inForce()
	if f == k {
		return routing{t: target, k: k}
	}
	hold := func(g gate) routing {
		h := max(f, 0)
		return routing{t: s.foldAt(h), k: h, g: g}
	}
	if s.in.Observations.Window.Closed || st.Pause != nil {
		if buildPlan(s.ro, st, target).Version != buildPlan(s.ro, st, s.foldAt(f)).Version {
			return hold(gateHeld)
		}
	}
	if need := s.need(target); need > s.need(s.foldAt(f)) && !s.carries(need) || !s.extrasReady(target) {
		return hold(gateReady)
	}
	if s.replicasRouter() {
		// No data plane to warm up; stable's pods come first when the
		// weight goes down (replicas.go).
		if !s.stableCarries(target, s.foldAt(f)) {
			return hold(gateReady)
		}
		return routing{t: target, k: k}
	}
	if target.sendsToCanary() && !s.canaryKnown() || !s.extrasWarm(target) {
		return hold(gateWarm)
	}
	return routing{t: target, k: k}
}

const warmupMessage = "adding the canary at 0% first"

// canaryKnown reports whether the data plane has acknowledged a plan with
// the canary subset selecting the canary revision, and every plan since
// kept it.
func (s *stepper) canaryKnown() bool {
	for _, sub := range s.st.Traffic.Subsets {
		if sub.Name == plan.Canary && sub.Revision == s.st.CanaryRevision {
			return sub.Acknowledged
		}
	}
	return false
}

// need is how many available canary replicas t's traffic takes: none when
// it sends the canary nothing, and none in standalone mode, whose backends
// are always ready.
func (s *stepper) need(t traffic) int32 {
	if s.ro.Spec.Replicas == nil || !t.sendsToCanary() {
		return 0
	}
	return s.canaryReplicas(t)
}

func (s *stepper) carries(need int32) bool {
	if s.ro.Spec.Replicas == nil {
		return true
	}
	w := s.in.Observations.Workload
	return w != nil && w.CanaryAvailable >= need
}

// canaryReplicas scales the canary with its weight (blue/green and
// promotion: full scale), and keeps at least one replica for match routes,
// mirroring and analysis. With the replicas router the canary's pods are
// its weight (replicas.go).
func (s *stepper) canaryReplicas(t traffic) int32 {
	if s.replicasRouter() {
		return splitOf(&s.ro.Spec, t).canary
	}
	r := *s.ro.Spec.Replicas
	if s.ro.Spec.Strategy.BlueGreen != nil || t.full {
		return r
	}
	n := (r*t.weight + 99) / 100
	if n < 1 && r > 0 {
		n = 1
	}
	return n
}
