package engine

// A small simulator of the world around the engine, for tests that want to
// watch whole rollouts rather than single steps: a fake clock, a data plane
// that ACKs every published plan version after a delay, a workload whose new
// replicas become available after a delay, and an analysis provider that
// reports scripted phases. It drives Step the way an adapter would: at
// Output.RequeueAfter or at the next thing that happens in the fake world,
// whichever comes first, and writes a readable timeline of what it saw.

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// simStart is time zero of every simulation; timelines print offsets from it.
var simStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// simResult is what the fake analysis provider reports for a run once After
// has passed since the run started; until then it reports Running.
type simResult struct {
	Phase   v1alpha1.AnalysisPhase
	After   time.Duration
	Message string
}

// simEvent is something scripted to happen at an offset from simStart.
type simEvent struct {
	at time.Duration
	do func(*sim)
}

type simRun struct {
	started time.Time
	result  simResult
	stopped bool
	// told is the phase last reported to the engine, for the timeline.
	told v1alpha1.AnalysisPhase
}

type simReplicas struct {
	available int32
	target    int32
	// readyAt is when target replicas become available (scale-ups only).
	readyAt time.Time
}

// sim is the fake world. Configure the knobs, script events with at, then
// call run.
type sim struct {
	t   testing.TB
	ro  *v1alpha1.Rollout
	now time.Time

	// AckDelay is how long the data plane takes to ACK a published plan.
	ackDelay time.Duration
	// ReadyDelay is how long new replicas take to become available.
	readyDelay time.Duration
	// AnalysisDelay is when runs without a scripted result succeed;
	// background runs without one keep running.
	analysisDelay time.Duration
	// Results maps "<attempt>-<suffix>" of a run name (e.g. "1-step3",
	// "2-pre", "1-background") to its scripted result.
	results map[string]simResult
	// Nacks maps a plan's position in publication order (1 = first plan
	// published after the initial one) to the proxy error it is NACKed with.
	nacks map[int]string
	// OnRevert, if set, is called for each GitRevert action.
	onRevert func(*sim, GitRevert)
	// Aliases name revisions in the timeline's state lines.
	aliases map[string]string

	script  []simEvent
	cmds    []Command
	cmdSeq  int
	window  Window
	git     *v1alpha1.GitProvenance
	steps   int
	reverts []GitRevert

	// Data plane.
	published   string
	publishedAt time.Time
	publishedN  int
	ackTold     string

	runs     map[string]*simRun
	replicas map[string]*simReplicas
	scaleMsg string

	last      Output
	lastState string
	lines     []string
}

// newSim returns a simulation of ro, whose spec names the revision that
// serves before the test begins; the first Step makes it stable, silently.
func newSim(t testing.TB, ro *v1alpha1.Rollout) *sim {
	t.Helper()
	s := &sim{
		t:             t,
		ro:            ro.DeepCopy(),
		now:           simStart,
		ackDelay:      2 * time.Second,
		readyDelay:    20 * time.Second,
		analysisDelay: 2 * time.Minute,
		results:       map[string]simResult{},
		nacks:         map[int]string{},
		aliases:       map[string]string{},
		runs:          map[string]*simRun{},
		replicas:      map[string]*simReplicas{},
	}
	if s.ro.Generation == 0 {
		s.ro.Generation = 1
	}
	rev, err := DesiredRevision(&s.ro.Spec)
	if err != nil {
		t.Fatalf("sim: %v", err)
	}
	if s.ro.Spec.Replicas != nil {
		n := *s.ro.Spec.Replicas
		s.replicas[rev] = &simReplicas{available: n, target: n}
	}
	out, err := Step(Input{Rollout: s.ro.DeepCopy(), Now: s.now, Observations: s.observe()})
	if err != nil {
		t.Fatalf("sim: initial step: %v", err)
	}
	s.ro.Status = out.Status
	// The initial plan is in force and acknowledged before the test starts.
	s.published, s.publishedAt, s.ackTold = out.Plan.Version, s.now.Add(-time.Hour), out.Plan.Version
	s.ro.Status.Traffic.AcknowledgedVersion = out.Plan.Version
	s.last = out
	s.scaleMsg = s.scaleText(out.Scale)
	return s
}

// at schedules do at offset d from simStart.
func (s *sim) at(d time.Duration, do func(*sim)) {
	s.script = append(s.script, simEvent{at: d, do: do})
	sort.SliceStable(s.script, func(i, j int) bool { return s.script[i].at < s.script[j].at })
}

// alias names a revision in state lines, e.g. "v2" for a pod-template hash.
func (s *sim) alias(spec *v1alpha1.RolloutSpec, name string) {
	rev, err := DesiredRevision(spec)
	if err != nil {
		s.t.Fatalf("sim: %v", err)
	}
	s.aliases[rev] = name
}

func (s *sim) name(rev string) string {
	if a, ok := s.aliases[rev]; ok {
		return a
	}
	return rev
}

// push returns a scripted event that changes the spec as a Git commit would.
func simPush(what string, change func(*v1alpha1.RolloutSpec)) func(*sim) {
	return func(s *sim) {
		change(&s.ro.Spec)
		s.ro.Generation++
		rev, err := DesiredRevision(&s.ro.Spec)
		if err != nil {
			s.t.Fatalf("sim: %v", err)
		}
		s.logf("git", "%s (revision %s)", what, rev)
	}
}

// command returns a scripted event that issues a manual command.
func simCommand(kind v1alpha1.CommandKind, by string) func(*sim) {
	return func(s *sim) {
		s.cmdSeq++
		s.cmds = append(s.cmds, Command{ID: fmt.Sprintf("cmd-%d", s.cmdSeq), Kind: kind, By: by})
		s.logf("command", "%s: %s", by, kind)
	}
}

// simCloseWindow and simOpenWindow flip the deployment window.
func simCloseWindow(reason string, opens time.Duration) func(*sim) {
	return func(s *sim) {
		s.window = Window{Closed: true, Reason: reason, NextChange: simStart.Add(opens)}
		s.logf("window", "closed: %s", reason)
	}
}

func simOpenWindow() func(*sim) {
	return func(s *sim) {
		s.window = Window{}
		s.logf("window", "open")
	}
}

func (s *sim) logf(kind, format string, args ...any) {
	s.lines = append(s.lines, fmt.Sprintf("%s  %-8s  %s", simClock(s.now.Sub(simStart)), kind, fmt.Sprintf(format, args...)))
}

func simClock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// observe gathers what the fake world shows at s.now, logging news.
func (s *sim) observe() Observations {
	var obs Observations
	if s.published != "" {
		obs.DataPlane = DataPlane{Version: s.published}
		if !s.now.Before(s.publishedAt.Add(s.ackDelay)) {
			msg, nack := s.nacks[s.publishedN]
			if nack {
				obs.DataPlane.State, obs.DataPlane.Message = AckRejected, msg
			} else {
				obs.DataPlane.State = AckAcknowledged
			}
			if s.ackTold != s.published {
				s.ackTold = s.published
				if nack {
					s.logf("nack", "plan %s: %s", simShort(s.published), msg)
				} else {
					s.logf("ack", "plan %s", simShort(s.published))
				}
			}
		}
	}
	if s.ro.Spec.Replicas != nil {
		st := &s.ro.Status
		w := &Workload{StableAvailable: s.available(st.StableRevision), CanaryAvailable: s.available(st.CanaryRevision)}
		obs.Workload = w
	}
	for _, name := range slices.Sorted(maps.Keys(s.runs)) {
		r := s.runs[name]
		if r.stopped {
			continue
		}
		o := AnalysisObservation{Name: name, Phase: v1alpha1.AnalysisRunning}
		if r.result.Phase != "" && !s.now.Before(r.started.Add(r.result.After)) {
			o.Phase, o.Message = r.result.Phase, r.result.Message
		}
		if o.Phase != r.told {
			r.told = o.Phase
			if o.Phase != v1alpha1.AnalysisRunning {
				msg := ""
				if o.Message != "" {
					msg = ": " + o.Message
				}
				s.logf("analysis", "run %s %s%s", name, o.Phase, msg)
			}
		}
		obs.Analysis = append(obs.Analysis, o)
	}
	obs.Commands, s.cmds = s.cmds, nil
	obs.Window = s.window
	obs.Git = s.git
	return obs
}

func (s *sim) available(rev string) int32 {
	r := s.replicas[rev]
	if r == nil {
		return 0
	}
	if r.target > r.available && !s.now.Before(r.readyAt) {
		r.available = r.target
		s.logf("workload", "%s: %d/%d available", s.name(rev), r.available, r.target)
	}
	return r.available
}

func simShort(v string) string {
	if len(v) > 8 {
		return v[:8]
	}
	return v
}

// step runs one Step at s.now and applies its output to the fake world.
func (s *sim) step() {
	s.t.Helper()
	s.steps++
	in := Input{Rollout: s.ro.DeepCopy(), Now: s.now, Observations: s.observe()}
	out, err := Step(in)
	if err != nil {
		s.t.Fatalf("sim: Step at %s: %v", simClock(s.now.Sub(simStart)), err)
	}
	if err := out.Plan.Check(); err != nil {
		s.t.Fatalf("sim: plan at %s: %v", simClock(s.now.Sub(simStart)), err)
	}
	s.ro.Status = out.Status
	s.last = out
	for _, e := range out.Events {
		s.logf("event", "%s: %s", e.Reason, e.Message)
	}
	for _, a := range out.Actions {
		switch a.Kind {
		case ActionStartAnalysis:
			names := make([]string, 0, len(a.Run.Templates))
			for _, t := range a.Run.Templates {
				names = append(names, t.Name)
			}
			s.logf("action", "start %s analysis %s [%s]", lowerKind(a.Run.Kind), a.Run.Name, strings.Join(names, ","))
			s.startRun(a.Run.Name)
		case ActionStopAnalysis:
			s.logf("action", "stop analysis %s", a.Run.Name)
			if r := s.runs[a.Run.Name]; r != nil {
				r.stopped = true
			}
		case ActionGitRevert:
			rv := *a.Revert
			who := rv.Rollout
			if rv.Namespace != "" {
				who = rv.Namespace + "/" + who
			}
			s.logf("action", "git revert %s to %s (failed %s): %s", who, s.name(rv.StableRevision), s.name(rv.FailedRevision), rv.Reason)
			s.reverts = append(s.reverts, rv)
			if s.onRevert != nil {
				s.onRevert(s, rv)
			}
		}
	}
	// Runs that status says are running must exist (a restarted adapter
	// recreates them); the provider treats StartAnalysis as idempotent.
	for _, r := range out.Status.Analysis {
		if r.Phase == v1alpha1.AnalysisRunning && !r.Terminated {
			s.startRun(r.Name)
		}
	}
	if out.Plan.Version != s.published {
		s.published, s.publishedAt = out.Plan.Version, s.now
		s.publishedN++
	}
	if out.Status.Traffic.Replicas != nil {
		// The replicas router has no data plane to answer: its pods are.
		s.ackTold = s.published
	}
	s.applyScale(out.Scale)
	if st := s.stateText(); st != s.lastState {
		s.lastState = st
		s.logf("state", "%s", st)
	}
}

// startRun is idempotent by name, as the contract requires of adapters.
func (s *sim) startRun(name string) {
	if _, ok := s.runs[name]; ok {
		return
	}
	r := &simRun{started: s.now, told: v1alpha1.AnalysisRunning}
	key := name
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if j := strings.LastIndexByte(name[:i], '-'); j >= 0 {
			key = name[j+1:]
		}
	}
	if res, ok := s.results[key]; ok {
		r.result = res
	} else if !strings.HasSuffix(name, "-background") {
		r.result = simResult{Phase: v1alpha1.AnalysisSuccessful, After: s.analysisDelay}
	}
	s.runs[name] = r
}

func (s *sim) applyScale(scale []Scale) {
	if s.ro.Spec.Replicas == nil {
		return
	}
	want := map[string]int32{}
	for _, sc := range scale {
		want[sc.Revision] = sc.Replicas
	}
	for rev := range s.replicas {
		if _, ok := want[rev]; !ok {
			want[rev] = 0
		}
	}
	for _, rev := range slices.Sorted(maps.Keys(want)) {
		n := want[rev]
		r := s.replicas[rev]
		if r == nil {
			r = &simReplicas{}
			s.replicas[rev] = r
		}
		if n == r.target {
			continue
		}
		r.target = n
		if n < r.available {
			r.available = n
		} else {
			r.readyAt = s.now.Add(s.readyDelay)
		}
	}
	if msg := s.scaleText(scale); msg != s.scaleMsg {
		s.scaleMsg = msg
		s.logf("scale", "%s", msg)
	}
}

func (s *sim) scaleText(scale []Scale) string {
	if s.ro.Spec.Replicas == nil {
		return ""
	}
	parts := make([]string, 0, len(scale))
	for _, sc := range scale {
		parts = append(parts, fmt.Sprintf("%s=%d", s.name(sc.Revision), sc.Replicas))
	}
	return strings.Join(parts, " ")
}

// stateText summarises the status in one line: step, traffic, plan, phase.
func (s *sim) stateText() string {
	st := &s.ro.Status
	where := "stable " + s.name(st.StableRevision)
	if st.CanaryRevision != "" {
		where = "aborted"
		if st.Abort == nil {
			where = "starting"
			if st.CurrentStepIndex != nil {
				where = "step " + st.StepDisplay + " " + simStepLabel(s.ro, int(*st.CurrentStepIndex))
			}
		}
	}
	tr := st.Traffic
	traffic := fmt.Sprintf("stable %d / canary %d", tr.StableWeight, tr.CanaryWeight)
	for _, sub := range tr.Subsets {
		if sub.Name != "stable" && sub.Name != "canary" {
			traffic += fmt.Sprintf(" / %s %d", sub.Name, sub.Weight)
		}
	}
	if len(tr.Routes) > 0 {
		traffic += " +" + strings.Join(tr.Routes, ",")
	}
	if tr.MirrorPercent > 0 {
		traffic += fmt.Sprintf(" mirror %d%%", tr.MirrorPercent)
	}
	if sp := tr.Replicas; sp != nil {
		traffic += fmt.Sprintf(" (pods %d/%d)", sp.Stable, sp.Canary)
	}
	ack := "pending"
	switch {
	case tr.AcknowledgedVersion == tr.PlanVersion:
		ack = "acked"
	case tr.RejectedVersion == tr.PlanVersion:
		ack = "rejected"
	}
	line := fmt.Sprintf("%-42s %-30s plan %s  %-8s %s", where, traffic, simShort(tr.PlanVersion), ack, st.Phase)
	if st.Phase == v1alpha1.PhasePaused && st.Pause != nil {
		line += " (" + st.Pause.Reason + ")"
	}
	return strings.TrimRight(line, " ")
}

func simStepLabel(ro *v1alpha1.Rollout, i int) string {
	steps, err := compile(ro.Spec.Strategy)
	if err != nil {
		return "?"
	}
	if i >= len(steps) {
		return "promote to 100%"
	}
	return steps[i].String()
}

// next is the earliest future moment at which something happens.
func (s *sim) next() (time.Time, bool) {
	var best time.Time
	consider := func(t time.Time) {
		if t.After(s.now) && (best.IsZero() || t.Before(best)) {
			best = t
		}
	}
	if d := s.last.RequeueAfter; d > 0 {
		consider(s.now.Add(d))
	}
	if s.published != "" && s.ackTold != s.published {
		consider(s.publishedAt.Add(s.ackDelay))
	}
	for _, r := range s.runs {
		if !r.stopped && r.result.Phase != "" && r.told != r.result.Phase {
			consider(r.started.Add(r.result.After))
		}
	}
	for _, r := range s.replicas {
		if r.target > r.available {
			consider(r.readyAt)
		}
	}
	if len(s.script) > 0 {
		consider(simStart.Add(s.script[0].at))
	}
	return best, !best.IsZero()
}

// run drives the simulation until nothing more is due, or fails the test
// after limit of simulated time.
func (s *sim) run(limit time.Duration) {
	s.t.Helper()
	s.runScript()
	s.step()
	for {
		at, ok := s.next()
		if !ok {
			return
		}
		if at.Sub(simStart) > limit || s.steps > 10000 {
			s.t.Fatalf("sim: still busy after %s (%d steps); timeline so far:\n%s", limit, s.steps, s.timeline())
		}
		s.now = at
		s.runScript()
		s.step()
	}
}

func (s *sim) runScript() {
	for len(s.script) > 0 && !s.now.Before(simStart.Add(s.script[0].at)) {
		ev := s.script[0]
		s.script = s.script[1:]
		ev.do(s)
	}
}

func (s *sim) timeline() string {
	return strings.Join(s.lines, "\n") + "\n"
}
