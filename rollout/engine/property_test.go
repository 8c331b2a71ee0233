package engine

// Property tests: random valid Rollouts of every strategy (canary, blue/green,
// dark release; standalone and controller mode; background analysis,
// session affinity, fault policies, rollback policies), driven through
// random observation sequences (ACK / NACK / stale / no answer from the data
// plane, analysis phases, workload readiness, all six commands with fresh and
// repeated IDs, deployment windows, Git pushes, time passing), with every
// property of propProperties checked at every Step.
//
// A trajectory is a pure function of its seed (math/rand/v2 PCG) and is
// walked once, all properties checked along it, so a failure's seed replays
// exactly:
//
//	go test ./rollout/engine -run 'TestEngineProperties/<name>$' -prop.seed=<seed> -v
//
// -prop.reports=N prints more failing seeds per property. The bugs found so
// far have minimal reproducers in property_repro_test.go and
// invariants_repro_test.go.
//
// SLUICE_PROP_SEEDS and SLUICE_PROP_STEPS set the number of trajectories and
// their length, for a long run before a release:
//
//	SLUICE_PROP_SEEDS=20000 go test ./rollout/engine -run TestEngineProperties -timeout 2h

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var (
	propSeedFlag    = flag.Uint64("prop.seed", 0, "run the property tests on this one seed (as printed by a failure)")
	propReportsFlag = flag.Int("prop.reports", 3, "failing seeds reported in full per property")
)

// Trajectories per property and Steps per trajectory; -short runs fewer.
const (
	propRollouts      = 300
	propSteps         = 60
	propRolloutsShort = 50
	propStepsShort    = 40
	// propFirstSeed is the first seed; seeds are consecutive from it.
	propFirstSeed = 1
)

func propSeeds() (seeds []uint64, steps int) {
	n, steps := propRollouts, propSteps
	if testing.Short() {
		n, steps = propRolloutsShort, propStepsShort
	}
	if v, err := strconv.Atoi(os.Getenv("SLUICE_PROP_SEEDS")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("SLUICE_PROP_STEPS")); err == nil && v > 1 {
		steps = v
	}
	if *propSeedFlag != 0 {
		return []uint64{*propSeedFlag}, steps
	}
	for i := range n {
		seeds = append(seeds, propFirstSeed+uint64(i))
	}
	return seeds, steps
}

// propWorld is one random Rollout and the world around it: it generates the
// spec, then each Step's observations from the last status.
type propWorld struct {
	seed       uint64
	r          *rand.Rand
	meta       metav1.ObjectMeta
	spec       v1alpha1.RolloutSpec
	status     v1alpha1.RolloutStatus
	now        time.Time
	controller bool
	// replicas: the replicas router, with the strategies and steps it
	// runs (replicas_property_test.go).
	replicas bool

	latest    int            // highest version number pushed
	versionOf map[string]int // revision → version number
	tried     []int          // versions pushed after the first

	plans     map[string]plan.Plan // every plan the engine returned, by version
	planOrder []string
	// phases is what the fake analysis provider says of each run: once a
	// run completes it stays completed (except for rare stale reads).
	phases map[string]v1alpha1.AnalysisPhase
	cmdSeq int
	cmdIDs []string
	log    []string
}

var propStart = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

func newPropWorld(seed uint64) *propWorld {
	return newPropWorldOf(seed, false)
}

// newPropWorldOf is a world of seed; replicas makes it a world of the
// replicas router, always in controller mode.
func newPropWorldOf(seed uint64, replicas bool) *propWorld {
	w := &propWorld{
		seed:      seed,
		r:         rand.New(rand.NewPCG(seed, 0x5eed_511ce)),
		now:       propStart,
		latest:    1,
		versionOf: map[string]int{},
		plans:     map[string]plan.Plan{},
		phases:    map[string]v1alpha1.AnalysisPhase{},
		replicas:  replicas,
	}
	w.controller = replicas || w.chance(0.5)
	w.meta = metav1.ObjectMeta{Name: "app", Generation: 1}
	if w.controller {
		w.meta.Namespace = "shop"
	}
	w.spec = w.genSpec()
	w.setVersion(&w.spec, 1)
	return w
}

func (w *propWorld) chance(p float64) bool { return w.r.Float64() < p }

func (w *propWorld) intn(n int) int { return w.r.IntN(n) }

func (w *propWorld) pick(s []string) string { return s[w.intn(len(s))] }

// dur is a whole number of seconds in [1s, max].
func (w *propWorld) dur(max time.Duration) time.Duration {
	return time.Duration(1+w.r.Int64N(int64(max/time.Second))) * time.Second
}

func (w *propWorld) mdur(max time.Duration) *metav1.Duration {
	return &metav1.Duration{Duration: w.dur(max)}
}

func (w *propWorld) setVersion(spec *v1alpha1.RolloutSpec, k int) {
	v := fmt.Sprintf("v%d", k)
	if w.controller {
		spec.Template = &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "app"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:" + v}}},
		}
	} else {
		spec.Backend = &v1alpha1.Backend{Version: v, Endpoints: []string{fmt.Sprintf("10.0.0.%d:8080", k%250+1)}}
	}
	rev, err := DesiredRevision(spec)
	if err != nil {
		panic(err)
	}
	w.versionOf[rev] = k
}

func (w *propWorld) genSpec() v1alpha1.RolloutSpec {
	if w.replicas {
		return w.genReplicasSpec()
	}
	hosts := []string{"app.example.com", "app", "app.shop.svc.cluster.local"}
	w.r.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	spec := v1alpha1.RolloutSpec{
		Service: v1alpha1.ServiceSpec{Name: "app", Hosts: hosts[:1+w.intn(len(hosts))], Port: 8080},
	}
	if w.chance(0.4) {
		spec.Service.Policy = w.genPolicy()
	}
	if w.chance(0.3) {
		aff := &v1alpha1.SessionAffinity{}
		if w.chance(0.6) {
			aff.Cookie = &v1alpha1.CookieAffinity{}
			if w.chance(0.5) {
				aff.Cookie.Name = "canary-id"
			}
			if w.chance(0.5) {
				aff.Cookie.MaxAge = w.mdur(24 * time.Hour)
			}
		} else {
			aff.Header = &v1alpha1.HeaderAffinity{Name: "x-canary-id"}
		}
		spec.Service.SessionAffinity = aff
	}
	if w.controller {
		n := int32(1 + w.intn(6))
		if w.chance(0.1) {
			n = 0
		}
		spec.Replicas = &n
	}
	spec.Strategy = w.genStrategy()
	w.genPolicies(&spec)
	return spec
}

// genPolicies fills in what follows the strategy: background analysis,
// rollback, deadlines, spec.paused.
func (w *propWorld) genPolicies(spec *v1alpha1.RolloutSpec) {
	if w.chance(0.3) {
		bg := &v1alpha1.BackgroundAnalysis{AnalysisStep: *w.genAnalysis()}
		if n := len(propCanarySteps(spec.Strategy)); n > 0 && w.chance(0.5) {
			s := int32(w.intn(n))
			bg.StartingStep = &s
		}
		spec.Analysis = bg
	}
	actions := []v1alpha1.FailureAction{"", v1alpha1.ActionAbort, v1alpha1.ActionPause}
	spec.Rollback = v1alpha1.RollbackPolicy{
		OnAnalysisFailure: actions[w.intn(3)],
		OnNack:            actions[w.intn(3)],
		GitRevert:         w.chance(0.5),
	}
	if w.chance(0.5) {
		d := int32(30 + w.intn(871))
		spec.ProgressDeadlineSeconds = &d
	}
	if w.chance(0.5) {
		d := int32(w.intn(301))
		spec.ScaleDownDelaySeconds = &d
	}
	spec.Paused = w.chance(0.03)
}

func (w *propWorld) genPolicy() *v1alpha1.RoutePolicy {
	p := &v1alpha1.RoutePolicy{}
	if w.chance(0.5) {
		p.Timeout = w.mdur(10 * time.Second)
	}
	if w.chance(0.4) {
		p.Retries = &v1alpha1.RetryPolicy{Attempts: int32(w.intn(11)), RetryOn: "5xx,reset"}
		if w.chance(0.5) {
			p.Retries.PerTryTimeout = w.mdur(2 * time.Second)
		}
	}
	if w.chance(0.5) {
		f := &v1alpha1.FaultPolicy{}
		if w.chance(0.6) {
			a := &v1alpha1.FaultAbort{Percent: int32(w.intn(101))}
			if w.chance(0.5) {
				a.HTTPStatus = simI32(503)
			} else {
				a.GRPCStatus = simI32(14)
			}
			f.Abort = a
		}
		if f.Abort == nil || w.chance(0.3) {
			f.Delay = &v1alpha1.FaultDelay{FixedDelay: *w.mdur(5 * time.Second), Percent: int32(w.intn(101))}
		}
		if w.chance(0.5) {
			f.Match = w.genMatches(2)
		}
		p.Fault = f
	}
	for i := range w.intn(3) {
		r := v1alpha1.PolicyRule{Name: fmt.Sprintf("rule%d", i), Match: w.genMatches(2)}
		if w.chance(0.5) {
			r.Timeout = w.mdur(5 * time.Second)
		}
		if r.Timeout == nil || w.chance(0.5) {
			r.Fault = &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: simI32(500), GRPCStatus: simI32(13), Percent: int32(w.intn(101))}}
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

func (w *propWorld) genMatches(max int) []v1alpha1.RouteMatch {
	out := make([]v1alpha1.RouteMatch, 1+w.intn(max))
	for i := range out {
		out[i] = w.genMatch()
	}
	return out
}

func (w *propWorld) genMatch() v1alpha1.RouteMatch {
	var m v1alpha1.RouteMatch
	for len(m.Headers) == 0 && m.URI == nil && len(m.Cookies) == 0 {
		if w.chance(0.7) {
			h := v1alpha1.HeaderMatch{Name: w.pick([]string{"end-user", "x-canary", "x-tenant", "user-agent"})}
			switch w.intn(5) {
			case 0, 1:
				h.Exact = simStr(w.pick([]string{"jason", "true", "acme"}))
			case 2:
				h.Prefix = simStr("Mozilla/")
			case 3:
				h.Regex = simStr("^(qa|beta)-[0-9]+$")
			default:
				b := w.chance(0.7)
				h.Present = &b
			}
			m.Headers = append(m.Headers, h)
		}
		if w.chance(0.2) {
			if w.chance(0.5) {
				m.URI = &v1alpha1.URIMatch{Prefix: simStr("/api/v2/")}
			} else {
				m.URI = &v1alpha1.URIMatch{Exact: simStr("/checkout")}
			}
		}
		if w.chance(0.3) {
			m.Cookies = append(m.Cookies, v1alpha1.CookieMatch{Name: w.pick([]string{"beta", "tester"}), Value: "on"})
		}
	}
	return m
}

func (w *propWorld) genAnalysis() *v1alpha1.AnalysisStep {
	a := &v1alpha1.AnalysisStep{}
	names := []string{"success-rate", "latency-p99", "error-rate"}
	w.r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names[:1+w.intn(2)] {
		a.Templates = append(a.Templates, v1alpha1.TemplateRef{Name: n})
	}
	if w.chance(0.4) {
		a.Args = append(a.Args, v1alpha1.Argument{Name: "threshold", Value: "0.99"})
	}
	if w.chance(0.2) {
		a.Args = append(a.Args, v1alpha1.Argument{Name: "window", Value: "5m"})
	}
	return a
}

func (w *propWorld) genWeight() int32 {
	switch w.intn(6) {
	case 0:
		return 0
	case 1:
		return 100
	case 2:
		return int32(w.intn(101))
	}
	return int32(5 * (1 + w.intn(19)))
}

func (w *propWorld) genCanarySteps(max int) []v1alpha1.CanaryStep {
	n := w.intn(max + 1)
	var set []string     // header routes currently set
	var running []string // extra revisions currently running
	var out []v1alpha1.CanaryStep
	kinds := 12
	if w.replicas {
		kinds = 7 // setWeight, pause, analysis
	}
	for len(out) < n {
		var s v1alpha1.CanaryStep
		switch w.intn(kinds) {
		case 0, 1, 2, 3:
			wt := w.genWeight()
			s.SetWeight = &wt
		case 4, 5:
			s.Pause = &v1alpha1.PauseStep{}
			if w.chance(0.7) {
				s.Pause.Duration = w.mdur(10 * time.Minute)
			}
		case 6:
			s.Analysis = w.genAnalysis()
		case 7, 8:
			name := w.pick([]string{"jason", "beta", "qa"})
			s.SetHeaderRoute = &v1alpha1.HeaderRouteStep{Name: name, Match: w.genMatches(2)}
			if !slices.Contains(set, name) {
				set = append(set, name)
			}
		case 9:
			if len(set) == 0 {
				continue
			}
			i := w.intn(len(set))
			s.SetHeaderRoute = &v1alpha1.HeaderRouteStep{Name: set[i]}
			set = slices.Delete(set, i, i+1)
		case 10:
			if len(running) > 0 && w.chance(0.3) {
				i := w.intn(len(running))
				s.SetRevision = &v1alpha1.RevisionStep{Name: running[i]}
				running = slices.Delete(running, i, i+1)
				break
			}
			r := &v1alpha1.RevisionStep{Name: w.pick([]string{"exp", "baseline"}), Weight: int32(5 * w.intn(2))}
			if w.controller {
				r.Template = &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromStable}
				if w.chance(0.5) {
					r.Template.From = v1alpha1.RevisionFromCanary
					r.Template.Images = map[string]string{"app": fmt.Sprintf("registry.example.com/app:x%d", w.intn(3))}
				}
			} else {
				r.Backend = &v1alpha1.Backend{Version: fmt.Sprintf("x-%s-%d", r.Name, w.intn(3)), Endpoints: []string{"10.0.9.1:8080"}}
			}
			if r.Weight == 0 || w.chance(0.3) {
				r.Match = w.genMatches(1)
			}
			if w.chance(0.3) {
				r.Duration = w.mdur(10 * time.Minute)
			}
			s.SetRevision = r
			if !slices.Contains(running, r.Name) {
				running = append(running, r.Name)
			}
		default:
			p := int32(w.intn(101))
			if w.chance(0.2) {
				p = 0
			}
			s.SetMirror = &v1alpha1.MirrorStep{Percent: p}
		}
		out = append(out, s)
	}
	return out
}

func (w *propWorld) genStrategy() v1alpha1.Strategy {
	if w.replicas {
		return v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: w.genCanarySteps(8)}}
	}
	switch x := w.intn(4); {
	case x < 2:
		return v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: w.genCanarySteps(8)}}
	case x == 2:
		bg := &v1alpha1.BlueGreenStrategy{}
		if w.chance(0.7) {
			bg.Preview.Match = w.genMatches(2)
		}
		if len(bg.Preview.Match) == 0 || w.chance(0.4) {
			bg.Preview.Hosts = []string{"preview.example.com", "beta.example.com"}[:1+w.intn(2)]
		}
		if w.chance(0.5) {
			bg.PrePromotionAnalysis = w.genAnalysis()
		}
		if w.chance(0.5) {
			bg.PostPromotionAnalysis = w.genAnalysis()
		}
		if w.chance(0.5) {
			s := int32(w.intn(601))
			bg.AutoPromotionSeconds = &s
		}
		return v1alpha1.Strategy{BlueGreen: bg}
	default:
		dr := &v1alpha1.DarkReleaseStrategy{Match: w.genMatches(3)}
		if w.chance(0.6) {
			dr.Analysis = w.genAnalysis()
		}
		if w.chance(0.5) {
			dr.Duration = w.mdur(10 * time.Minute)
		}
		if w.chance(0.5) {
			dr.Steps = w.genCanarySteps(5)
		}
		return v1alpha1.Strategy{DarkRelease: dr}
	}
}

// propCanarySteps are the canary steps of a strategy, which background
// analysis's startingStep indexes.
func propCanarySteps(st v1alpha1.Strategy) []v1alpha1.CanaryStep {
	switch {
	case st.Canary != nil:
		return st.Canary.Steps
	case st.DarkRelease != nil:
		return st.DarkRelease.Steps
	}
	return nil
}

// fitBackground keeps background analysis's startingStep valid for a new
// strategy.
func (w *propWorld) fitBackground() {
	if bg := w.spec.Analysis; bg != nil && bg.StartingStep != nil && int(*bg.StartingStep) >= len(propCanarySteps(w.spec.Strategy)) {
		bg.StartingStep = nil
	}
}

// rollout is the engine's view: the spec as last pushed, the status as last
// returned.
func (w *propWorld) rollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{ObjectMeta: *w.meta.DeepCopy(), Spec: *w.spec.DeepCopy(), Status: *w.status.DeepCopy()}
}

func (w *propWorld) logf(format string, args ...any) {
	w.log[len(w.log)-1] += fmt.Sprintf(format, args...)
}

// first is the Input of the first Step: no rollout yet, the spec becomes
// stable.
func (w *propWorld) first() Input {
	w.log = append(w.log, "start")
	return Input{Rollout: w.rollout(), Now: w.now}
}

// next generates the next Step's Input.
func (w *propWorld) next(i int) Input {
	var dt time.Duration
	switch x := w.intn(100); {
	case x < 25:
	case x < 65:
		dt = w.dur(time.Minute)
	case x < 90:
		dt = w.dur(5 * time.Minute)
	default:
		dt = 5*time.Minute + w.dur(15*time.Minute)
	}
	dt += w.propFraction()
	w.now = w.now.Add(dt)
	w.log = append(w.log, fmt.Sprintf("step %d: +%s", i, dt))

	if i == 1 || w.chance(0.05) {
		w.changeSpec(i == 1)
	}
	st := &w.status
	var obs Observations

	cur := st.Traffic.PlanVersion
	switch x := w.intn(100); {
	case x < 55:
		obs.DataPlane = DataPlane{Version: cur, State: AckAcknowledged}
		w.logf(" ack")
	case x < 60:
		obs.DataPlane = DataPlane{Version: cur, State: AckRejected, Message: "route app: unknown cluster"}
		w.logf(" NACK")
	case x < 70 && len(w.planOrder) > 1:
		old := w.planOrder[w.intn(len(w.planOrder)-1)]
		state := AckAcknowledged
		if w.chance(0.3) {
			state = AckRejected
		}
		obs.DataPlane = DataPlane{Version: old, State: state, Message: "stale"}
		w.logf(" stale-%s", state)
	case x < 80:
		obs.DataPlane = DataPlane{Version: cur}
		w.logf(" pending")
	}

	if w.controller {
		n := *w.spec.Replicas
		switch x := w.intn(100); {
		case x < 65:
			obs.Workload = &Workload{StableAvailable: n, CanaryAvailable: n}
		case x < 85:
			obs.Workload = &Workload{StableAvailable: int32(w.intn(int(n) + 2)), CanaryAvailable: int32(w.intn(int(n) + 2))}
			w.logf(" workload=%d/%d", obs.Workload.StableAvailable, obs.Workload.CanaryAvailable)
		default:
			w.logf(" workload=?")
		}
	}

	for _, r := range st.Analysis {
		ph, ok := w.phases[r.Name]
		if !ok {
			ph = v1alpha1.AnalysisRunning
		}
		if ph == v1alpha1.AnalysisRunning && w.chance(0.25) {
			switch x := w.intn(100); {
			case x < 55:
				ph = v1alpha1.AnalysisSuccessful
			case x < 70:
				ph = v1alpha1.AnalysisFailed
			case x < 85:
				ph = v1alpha1.AnalysisInconclusive
			default:
				ph = v1alpha1.AnalysisError
			}
		}
		w.phases[r.Name] = ph
		if !w.chance(0.7) {
			continue
		}
		o := AnalysisObservation{Name: r.Name, Phase: ph}
		if ph != v1alpha1.AnalysisRunning {
			o.Message = "error-rate: 0.07 > 0.05"
			if w.chance(0.5) {
				o.Metrics = []v1alpha1.MetricSummary{{Name: "error-rate", Phase: ph, LastValue: "0.07", Failed: 1}}
			}
			if w.chance(0.02) {
				// A stale read of a run that has completed.
				o.Phase, o.Message, o.Metrics = v1alpha1.AnalysisRunning, "", nil
				w.logf(" stale-run")
			}
		}
		if o.Phase != v1alpha1.AnalysisRunning {
			w.logf(" %s=%s", r.Name[strings.LastIndexByte(r.Name, '-')+1:], o.Phase)
		}
		obs.Analysis = append(obs.Analysis, o)
	}
	if w.chance(0.02) {
		obs.Analysis = append(obs.Analysis, AnalysisObservation{Name: "someone-else", Phase: v1alpha1.AnalysisFailed})
	}

	if w.chance(0.15) {
		kinds := []v1alpha1.CommandKind{v1alpha1.CommandPromote, v1alpha1.CommandPromoteFull, v1alpha1.CommandAbort,
			v1alpha1.CommandRetry, v1alpha1.CommandPause, v1alpha1.CommandResume}
		for range 1 + w.intn(2) {
			c := Command{Kind: kinds[w.intn(len(kinds))], By: w.pick([]string{"alice", "bob"})}
			switch x := w.intn(100); {
			case x < 80 || len(w.cmdIDs) == 0:
				w.cmdSeq++
				c.ID = fmt.Sprintf("cmd-%d", w.cmdSeq)
				w.cmdIDs = append(w.cmdIDs, c.ID)
			case x < 90:
				c.ID = w.cmdIDs[len(w.cmdIDs)-1]
			case x < 95:
				c.ID = w.cmdIDs[w.intn(len(w.cmdIDs))]
			}
			obs.Commands = append(obs.Commands, c)
			w.logf(" %s(%s)", c.Kind, c.ID)
		}
	}

	if w.chance(0.1) {
		obs.Window = Window{Closed: true, Reason: `deny "0 22 * * 5" for 60h`}
		if w.chance(0.5) {
			obs.Window.NextChange = w.now.Add(w.dur(2 * time.Hour))
		}
		w.logf(" window-closed")
	}
	if res, ok := RevertOutstanding(st); ok && w.chance(0.4) {
		switch x := w.intn(100); {
		case x < 30:
			res.Err = "push rejected"
		case x < 45:
			// as RevertOutstanding answers
		case x < 50:
			res.Attempt-- // an answer to an earlier attempt
			res.Err = "late"
		default:
			res.Err, res.Outcome, res.Commit = "", "pushed", fmt.Sprintf("%040x", w.r.Uint64())
		}
		obs.GitRevert = &res
		w.logf(" revert(%s%s)", res.Outcome, res.Err)
	}
	if w.chance(0.05) {
		obs.Git = &v1alpha1.GitProvenance{Repository: "https://git.example.com/shop.git", Commit: fmt.Sprintf("%040x", w.r.Uint64()), Path: "rollouts/app.yaml"}
	}
	return Input{Rollout: w.rollout(), Observations: obs, Now: w.now}
}

// changeSpec is a Git push: a new revision, back to stable, an earlier
// canary again, spec.paused flipped, or a new strategy for the same revision.
func (w *propWorld) changeSpec(forceNew bool) {
	w.meta.Generation++
	st := &w.status
	x := w.intn(100)
	switch {
	case forceNew || x < 40:
		w.latest++
		w.tried = append(w.tried, w.latest)
		w.setVersion(&w.spec, w.latest)
		w.logf(" push-v%d", w.latest)
	case x < 55:
		k := w.versionOf[st.StableRevision]
		w.setVersion(&w.spec, k)
		w.logf(" push-back-to-stable-v%d", k)
	case x < 65:
		k := w.tried[w.intn(len(w.tried))]
		w.setVersion(&w.spec, k)
		w.logf(" push-again-v%d", k)
	case x < 75:
		w.spec.Paused = !w.spec.Paused
		w.logf(" paused=%v", w.spec.Paused)
	case x < 87:
		w.spec.Strategy = w.genStrategy()
		w.fitBackground()
		w.logf(" new-strategy(%s)", propStrategyKind(w.spec.Strategy))
	default:
		w.editStrategy()
		w.fitBackground()
		w.logf(" edited-strategy(%s)", propStrategyKind(w.spec.Strategy))
	}
}

// editStrategy changes the current strategy a little, as a person editing
// the manifest would: steps dropped or added, analysis added or removed.
func (w *propWorld) editStrategy() {
	steps := func(in []v1alpha1.CanaryStep) []v1alpha1.CanaryStep {
		if len(in) > 0 && w.chance(0.6) {
			return in[:w.intn(len(in))]
		}
		// Added steps may remove header routes never set; the engine
		// treats that as a no-op, which is what validation would allow
		// of the whole list only, so keep additions free of removals.
		more := w.genCanarySteps(3)
		more = slices.DeleteFunc(more, func(s v1alpha1.CanaryStep) bool {
			return s.SetHeaderRoute != nil && len(s.SetHeaderRoute.Match) == 0
		})
		return append(in, more...)
	}
	switch st := &w.spec.Strategy; {
	case st.Canary != nil:
		st.Canary.Steps = steps(st.Canary.Steps)
	case st.DarkRelease != nil:
		st.DarkRelease.Steps = steps(st.DarkRelease.Steps)
	default:
		bg := st.BlueGreen
		switch w.intn(3) {
		case 0:
			if bg.PrePromotionAnalysis == nil {
				bg.PrePromotionAnalysis = w.genAnalysis()
			} else {
				bg.PrePromotionAnalysis = nil
			}
		case 1:
			if bg.PostPromotionAnalysis == nil {
				bg.PostPromotionAnalysis = w.genAnalysis()
			} else {
				bg.PostPromotionAnalysis = nil
			}
		default:
			if bg.AutoPromotionSeconds == nil {
				bg.AutoPromotionSeconds = simI32(int32(w.intn(601)))
			} else {
				bg.AutoPromotionSeconds = nil
			}
		}
	}
}

func propStrategyKind(s v1alpha1.Strategy) string {
	switch {
	case s.Canary != nil:
		return fmt.Sprintf("canary,%d steps", len(s.Canary.Steps))
	case s.BlueGreen != nil:
		return "blueGreen"
	}
	return "darkRelease"
}

// apply records an Output as the adapter would: the status is persisted
// (through JSON, as the API server and the standalone store keep it, so the
// next Step resumes from what a restart would read) and the plan published.
func (w *propWorld) apply(out Output) {
	b, err := json.Marshal(out.Status)
	if err != nil {
		panic(err)
	}
	w.status = v1alpha1.RolloutStatus{}
	if err := json.Unmarshal(b, &w.status); err != nil {
		panic(err)
	}
	if _, ok := w.plans[out.Plan.Version]; !ok {
		w.plans[out.Plan.Version] = out.Plan
		w.planOrder = append(w.planOrder, out.Plan.Version)
	}
}

// history is the tail of the input log, for failure messages.
func (w *propWorld) history() string {
	from := max(0, len(w.log)-10)
	return "  " + strings.Join(w.log[from:], "\n  ")
}

// propCopyInput deep-copies an Input.
func propCopyInput(in Input) Input {
	out := in
	out.Rollout = in.Rollout.DeepCopy()
	o := &out.Observations
	if in.Observations.Workload != nil {
		wl := *in.Observations.Workload
		o.Workload = &wl
	}
	o.Analysis = nil
	for _, a := range in.Observations.Analysis {
		a.Metrics = slices.Clone(a.Metrics)
		o.Analysis = append(o.Analysis, a)
	}
	o.Commands = slices.Clone(in.Observations.Commands)
	o.Git = in.Observations.Git.DeepCopy()
	return out
}

// propStep is Step with a panic turned into an error, so one bad seed is
// reported like any other violation instead of ending the test binary.
func propStep(in Input) (out Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return Step(in)
}

// propCtx is one Step of a trajectory, as the checks see it: pre is a deep
// copy of in taken before the Step.
type propCtx struct {
	w       *propWorld
	i       int
	steps   int
	pre, in Input
	out     Output

	settled    *Output
	settledErr error
}

// settle is the Step right after out with nothing new observed (see
// propSettled), computed once for the checks that need it.
func (c *propCtx) settle() (Output, error) {
	if c.settled == nil {
		echo := (c.w.seed+uint64(c.i))%2 == 0
		out, err := propStep(propSettled(c.pre, c.out, c.pre.Now, echo))
		c.settled, c.settledErr = &out, err
	}
	return *c.settled, c.settledErr
}

// propCheck inspects one Step and returns what is wrong, or "". Each seed
// gets a fresh check from its constructor, so checks may keep state.
type propCheck func(c *propCtx) string

type propProperty struct {
	name  string
	check func() propCheck
}

// propProperties are checked on every Step of every trajectory.
var propProperties = []propProperty{
	{"plan_check", propPlanCheck},                               // (a)
	{"abort_routes_stable", propAbortStable},                    // (b)
	{"deterministic", propDeterministic},                        // (c)
	{"fixpoint", propFixpoint},                                  // (d)
	{"json_round_trip", propJSONRoundTrip},                      // (e)
	{"plan_version_iff_content", propVersionIffContent},         // (f)
	{"no_canary_without_revision", propNoCanaryWithoutRevision}, // (g)
	{"degraded_sticks", propDegradedSticks},                     // (h)
	{"promotion_acknowledged", propPromotionAcknowledged},       // extra
	{"run_names_never_reused", propRunNamesNeverReused},         // extra
	{"run_outcomes_final", propRunOutcomesFinal},                // extra
	{"requeue_complete", propRequeueComplete},                   // extra
	{"progress_has_a_way_forward", propWayForward},              // extra
	{"match_routes_reach_canary", propMatchRoutesReachCanary},   // extra
	{"persisted_plan_rebuilds", propPersistedPlan},              // extra
	// The promises of docs/engine.md (property_promises_test.go).
	{"canary_carried", propCanaryCarried},
	{"subset_known_first", propSubsetKnownFirst},
	{"weights_follow_steps", propWeightsFollowSteps},
	{"freeze_holds", propFreezeHolds},
	{"command_once", propCommandOnce},
	{"clock_starts_at_ack", propClockStartsAtAck},
	{"no_unmatched_before_switch", propNoUnmatchedBeforeSwitch},
	{"nack_attributed", propNackAttributed},
	{"rejected_not_healthy", propRejectedNotHealthy},
	{"revert_asked_once", propRevertAskedOnce},
	{"abort_keeps_canary", propAbortKeepsCanary},
}

// propRunSeed walks one trajectory and checks every property at every
// Step; it returns the first violation of each property, by index.
func propRunSeed(seed uint64, steps int) map[int]string {
	return propWalk(newPropWorld(seed), "TestEngineProperties", propProperties, steps)
}

// propWalk walks w's trajectory, checking props at every Step; test names
// the test that replays a failing seed.
func propWalk(w *propWorld, test string, props []propProperty, steps int) map[int]string {
	seed := w.seed
	checks := make([]propCheck, len(props))
	for j, p := range props {
		checks[j] = p.check()
	}
	failed := map[int]string{}
	for i := range steps {
		var in Input
		if i == 0 {
			in = w.first()
		} else {
			in = w.next(i)
		}
		pre := propCopyInput(in)
		out, err := propStep(in)
		c := &propCtx{w: w, i: i, steps: steps, pre: pre, in: in, out: out}
		for j, p := range props {
			if _, done := failed[j]; done {
				continue
			}
			msg := ""
			if err != nil {
				msg = fmt.Sprintf("Step failed: %v", err)
			} else {
				msg = checks[j](c)
			}
			if msg != "" {
				failed[j] = fmt.Sprintf("seed %d, step %d: %s\n"+
					"replay: go test ./rollout/engine -run '%s/%s$' -prop.seed=%d -v\n"+
					"strategy: %s\nlast inputs:\n%s",
					seed, i, msg, test, p.name, seed, propStrategyKind(w.spec.Strategy), w.history())
			}
		}
		if err != nil || len(failed) == len(props) {
			break
		}
		w.apply(out)
	}
	return failed
}

// TestEngineProperties walks every seed's trajectory once, on all CPUs,
// checking all properties at every Step, then reports each property in a
// subtest of its own.
func TestEngineProperties(t *testing.T) {
	t.Parallel()
	propRunAll(t, propProperties, propRunSeed)
}

// propRunAll walks every seed with run on all CPUs and reports each of
// props in a subtest of its own.
func propRunAll(t *testing.T, props []propProperty, run func(seed uint64, steps int) map[int]string) {
	seeds, steps := propSeeds()
	results := make([]map[int]string, len(seeds))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for k := range next {
				results[k] = run(seeds[k], steps)
			}
		})
	}
	for k := range seeds {
		next <- k
	}
	close(next)
	wg.Wait()
	for j, p := range props {
		t.Run(p.name, func(t *testing.T) {
			failed := 0
			for _, r := range results {
				if msg, ok := r[j]; ok {
					failed++
					if failed <= *propReportsFlag {
						t.Error(msg)
					}
				}
			}
			if failed > 0 {
				t.Errorf("%d of %d seeds violate %s", failed, len(seeds), p.name)
			}
		})
	}
}

// (a) Every plan passes plan.Check, and status records its version.
func propPlanCheck() propCheck {
	return func(c *propCtx) string {
		out := c.out
		if err := out.Plan.Check(); err != nil {
			return fmt.Sprintf("plan.Check: %v\nplan: %s", err, propJSON(out.Plan))
		}
		if out.Status.Traffic.PlanVersion != out.Plan.Version {
			return fmt.Sprintf("status.traffic.planVersion %q, plan version %q", out.Status.Traffic.PlanVersion, out.Plan.Version)
		}
		return ""
	}
}

// (b) After an abort every route of every service host sends 100% to
// stable, none to the canary, and mirrors nothing; no extra revision
// runs (its ReplicaSet is scaled down) and the plan has no subset of one.
func propAbortStable() propCheck {
	return func(c *propCtx) string {
		in, out := c.in, c.out
		if out.Status.Abort == nil {
			return ""
		}
		if x := out.Status.ExtraRevisions; len(x) > 0 {
			return fmt.Sprintf("aborted, but extra revisions still run: %s", propJSON(x))
		}
		for _, s := range out.Plan.Subsets {
			if s.Name != plan.Stable && s.Name != plan.Canary {
				return fmt.Sprintf("aborted, but the plan keeps subset %q (revision %s)", s.Name, s.Revision)
			}
		}
		for _, name := range in.Rollout.Spec.Service.Hosts {
			i := slices.IndexFunc(out.Plan.Hosts, func(h plan.Host) bool { return h.Name == name })
			if i < 0 {
				return fmt.Sprintf("aborted, but host %q is missing from the plan", name)
			}
			for _, r := range out.Plan.Hosts[i].Routes {
				if r.Mirror != nil {
					return fmt.Sprintf("aborted, but host %q route %q mirrors to %s", name, r.Name, r.Mirror.Subset)
				}
				var stable int32
				for _, d := range r.Destinations {
					if d.Subset != plan.Stable {
						return fmt.Sprintf("aborted, but host %q route %q sends %d%% to %s", name, r.Name, d.Weight, d.Subset)
					}
					stable += d.Weight
				}
				if stable != 100 {
					return fmt.Sprintf("aborted, but host %q route %q sends %d%% to stable", name, r.Name, stable)
				}
			}
		}
		return ""
	}
}

// (c) Step on a deep copy of the same Input returns a deeply equal Output,
// and Step never modifies its Input.
func propDeterministic() propCheck {
	return func(c *propCtx) string {
		pre, in, out := c.pre, c.in, c.out
		if !reflect.DeepEqual(pre, in) {
			return "Step modified its Input:\n" + propDiff(pre, in)
		}
		again, err := propStep(propCopyInput(pre))
		if err != nil {
			return fmt.Sprintf("second Step failed: %v", err)
		}
		if !reflect.DeepEqual(out, again) {
			return "same Input, different Output:\n" + propDiff(out, again)
		}
		return ""
	}
}

// propSettled is the Input of a Step right after out: the same time and the
// same level observations (data plane, workload, window, Git), no commands,
// and analysis observations that agree with the status (or none).
func propSettled(in Input, out Output, now time.Time, echo bool) Input {
	next := propCopyInput(in)
	next.Rollout.Status = *out.Status.DeepCopy()
	next.Now = now
	next.Observations.Commands = nil
	next.Observations.Analysis = nil
	// A data-plane answer about the version this Step just switched to
	// predates its publication: it would be news, so it is left out.
	if dp := in.Observations.DataPlane; dp.Version == out.Plan.Version && dp.Version != in.Rollout.Status.Traffic.PlanVersion {
		next.Observations.DataPlane = DataPlane{}
	}
	if echo {
		for _, r := range out.Status.Analysis {
			next.Observations.Analysis = append(next.Observations.Analysis,
				AnalysisObservation{Name: r.Name, Phase: r.Phase, Message: r.Message})
		}
	}
	return next
}

// (d) Feeding a status back with nothing new observed changes nothing: the
// engine reaches its fixpoint in one Step.
func propFixpoint() propCheck {
	return func(c *propCtx) string {
		out := c.out
		again, err := c.settle()
		if err != nil {
			return fmt.Sprintf("second Step failed: %v", err)
		}
		var bad []string
		if !reflect.DeepEqual(out.Status, again.Status) {
			bad = append(bad, "status changed:\n"+propDiff(out.Status, again.Status))
		}
		if !reflect.DeepEqual(out.Plan, again.Plan) {
			bad = append(bad, "plan changed:\n"+propDiff(out.Plan, again.Plan))
		}
		if len(again.Actions) > 0 {
			bad = append(bad, "actions: "+propJSON(again.Actions))
		}
		if len(again.Events) > 0 {
			bad = append(bad, "events: "+propJSON(again.Events))
		}
		if !reflect.DeepEqual(out.Scale, again.Scale) || out.RequeueAfter != again.RequeueAfter {
			bad = append(bad, fmt.Sprintf("scale/requeue changed: %v %s → %v %s", out.Scale, out.RequeueAfter, again.Scale, again.RequeueAfter))
		}
		if len(bad) > 0 {
			return fmt.Sprintf("not a fixpoint; first Step's events: %s\n%s", propJSON(out.Events), strings.Join(bad, "\n"))
		}
		return ""
	}
}

// (f) A plan's version changes exactly when its content does.
func propVersionIffContent() propCheck {
	var prev *plan.Plan
	byContent := map[string]string{}
	return func(c *propCtx) string {
		out := c.out
		p := out.Plan
		blank := p
		blank.Version = ""
		key := propJSON(blank)
		if v, ok := byContent[key]; ok && v != p.Version {
			return fmt.Sprintf("same content, versions %q and %q", v, p.Version)
		}
		byContent[key] = p.Version
		if prev != nil {
			a, b := *prev, p
			a.Version, b.Version = "", ""
			same := reflect.DeepEqual(a, b)
			if same != (prev.Version == p.Version) {
				return fmt.Sprintf("content equal: %v, but versions %q → %q\n%s", same, prev.Version, p.Version, propDiff(a, b))
			}
		}
		prev = &p
		return ""
	}
}

// (g) No traffic, mirror or subset for a canary while status has none, and
// the subsets select status's revisions.
func propNoCanaryWithoutRevision() propCheck {
	return func(c *propCtx) string {
		out := c.out
		st, p := &out.Status, &out.Plan
		if got := p.Revision(plan.Stable); got != st.StableRevision {
			return fmt.Sprintf("stable subset selects %q, status.stableRevision is %q", got, st.StableRevision)
		}
		if got := p.Revision(plan.Canary); got != "" && got != st.CanaryRevision {
			return fmt.Sprintf("canary subset selects %q, status.canaryRevision is %q", got, st.CanaryRevision)
		}
		if st.CanaryRevision != "" {
			return ""
		}
		for _, h := range p.Hosts {
			for _, r := range h.Routes {
				for _, d := range r.Destinations {
					if d.Subset == plan.Canary && d.Weight > 0 {
						return fmt.Sprintf("no canary revision, but host %q route %q sends %d%% to the canary", h.Name, r.Name, d.Weight)
					}
				}
				if r.Mirror != nil && r.Mirror.Subset == plan.Canary {
					return fmt.Sprintf("no canary revision, but host %q route %q mirrors to the canary", h.Name, r.Name)
				}
			}
		}
		return ""
	}
}

// propRetryApplied reports whether cmds hold a retry the engine must apply:
// the dedupe rule is that a command with the ID of the last applied one is
// skipped.
func propRetryApplied(last *v1alpha1.CommandRecord, cmds []Command) bool {
	lastID := ""
	if last != nil {
		lastID = last.ID
	}
	for _, c := range cmds {
		if c.ID != "" && c.ID == lastID {
			continue
		}
		if c.Kind == v1alpha1.CommandRetry {
			return true
		}
		lastID = c.ID
	}
	return false
}

// (h) Only retry or a new spec revision leaves Degraded.
func propDegradedSticks() propCheck {
	return func(c *propCtx) string {
		in, out := c.in, c.out
		prev := &in.Rollout.Status
		// A rejected plan also reads Degraded, until the data plane takes
		// a plan again; the abort is what sticks.
		if prev.Abort == nil || prev.Phase != v1alpha1.PhaseDegraded || out.Status.Phase == v1alpha1.PhaseDegraded {
			return ""
		}
		desired, _ := DesiredRevision(&in.Rollout.Spec)
		if desired != prev.CanaryRevision || propRetryApplied(prev.LastCommand, in.Observations.Commands) {
			return ""
		}
		return fmt.Sprintf("left Degraded for %s (%s) with no retry and no new revision; commands %s",
			out.Status.Phase, out.Status.Message, propJSON(in.Observations.Commands))
	}
}

// (extra) A revision becomes stable only after the data plane acknowledged a
// plan that sends it 100% on every service host: promotion is an
// acknowledged step like any other.
func propPromotionAcknowledged() propCheck {
	return func(c *propCtx) string {
		w, in, out := c.w, c.in, c.out
		prev, st := &in.Rollout.Status, &out.Status
		if prev.StableRevision == "" || st.StableRevision == prev.StableRevision {
			return ""
		}
		if st.StableRevision != prev.CanaryRevision {
			return fmt.Sprintf("stable changed from %q to %q, which was not the canary (%q)", prev.StableRevision, st.StableRevision, prev.CanaryRevision)
		}
		// Promotion needs the last published plan (the 100% one) acknowledged,
		// before this Step or by its observation.
		ackedVersion := prev.Traffic.AcknowledgedVersion
		if dp := in.Observations.DataPlane; dp.State == AckAcknowledged && dp.Version == prev.Traffic.PlanVersion {
			ackedVersion = dp.Version
		}
		if ackedVersion == "" || ackedVersion != prev.Traffic.PlanVersion {
			return fmt.Sprintf("promoted %s, but the published plan %q was not acknowledged (acknowledged %q)", st.StableRevision, prev.Traffic.PlanVersion, ackedVersion)
		}
		acked, ok := w.plans[ackedVersion]
		if !ok {
			return fmt.Sprintf("promoted %s, but the acknowledged version %q is no plan the engine published", st.StableRevision, ackedVersion)
		}
		if acked.Revision(plan.Canary) != st.StableRevision {
			return fmt.Sprintf("promoted %s, but the acknowledged plan's canary subset selects %q", st.StableRevision, acked.Revision(plan.Canary))
		}
		for _, name := range in.Rollout.Spec.Service.Hosts {
			i := slices.IndexFunc(acked.Hosts, func(h plan.Host) bool { return h.Name == name })
			if i < 0 || acked.Hosts[i].Weight(plan.Canary) != 100 {
				return fmt.Sprintf("promoted %s, but the last acknowledged plan %s does not send it 100%% on host %q:\n%s",
					st.StableRevision, acked.Version, name, propJSON(acked.Hosts))
			}
		}
		return ""
	}
}

// (extra) StartAnalysis is idempotent by run name, so a name must never be
// started twice in a Rollout's life: the adapter would hand back the old
// run, with its old verdict.
func propRunNamesNeverReused() propCheck {
	started := map[string]int{}
	return func(c *propCtx) string {
		i, out := c.i, c.out
		for _, a := range out.Actions {
			if a.Kind != ActionStartAnalysis {
				continue
			}
			if at, ok := started[a.Run.Name]; ok {
				return fmt.Sprintf("StartAnalysis %s, a name already started at step %d", a.Run.Name, at)
			}
			started[a.Run.Name] = i
		}
		seen := map[string]bool{}
		for _, r := range out.Status.Analysis {
			if seen[r.Name] {
				return fmt.Sprintf("status lists run %s twice", r.Name)
			}
			seen[r.Name] = true
			if r.Phase == v1alpha1.AnalysisRunning && !r.Terminated {
				if _, ok := started[r.Name]; !ok {
					return fmt.Sprintf("status lists run %s as running, but it was never started", r.Name)
				}
			}
		}
		return ""
	}
}

// (extra) A run's outcome, once in status, is final: a completed run never
// runs again and a terminated one stays terminated, whatever a (stale)
// observation says.
func propRunOutcomesFinal() propCheck {
	return func(c *propCtx) string {
		in, out := c.in, c.out
		for _, before := range in.Rollout.Status.Analysis {
			if !before.Phase.Completed() && !before.Terminated {
				continue
			}
			i := slices.IndexFunc(out.Status.Analysis, func(r v1alpha1.AnalysisRunStatus) bool { return r.Name == before.Name })
			if i < 0 {
				continue
			}
			after := out.Status.Analysis[i]
			// A finished run may be retired (resume measures again), never
			// revived or given another verdict.
			if after.Phase != before.Phase || (before.Terminated && !after.Terminated) {
				return fmt.Sprintf("run %s went from %s (terminated %v) to %s (terminated %v)",
					before.Name, before.Phase, before.Terminated, after.Phase, after.Terminated)
			}
		}
		return ""
	}
}

// (extra) RequeueAfter is complete: with nothing new observed, a Step
// earlier than Now+RequeueAfter (any time later, when it is zero) changes
// nothing but countdown text.
func propRequeueComplete() propCheck {
	return func(c *propCtx) string {
		w, i, pre, out := c.w, c.i, c.pre, c.out
		var d time.Duration
		switch rq := out.RequeueAfter; {
		case rq == 0:
			d = time.Duration(1+(w.seed*31+uint64(i)*7)%7200) * time.Second
		case rq >= 2*time.Second:
			d = time.Duration(1+(w.seed*31+uint64(i)*7)%uint64(rq/time.Second-1)) * time.Second
			if d >= rq {
				return ""
			}
		default:
			return ""
		}
		// Only from a fixpoint: reaching one is the fixpoint property's job.
		if again, err := c.settle(); err != nil || !reflect.DeepEqual(out.Status, again.Status) {
			return ""
		}
		later, err := propStep(propSettled(pre, out, pre.Now.Add(d), true))
		if err != nil {
			return fmt.Sprintf("second Step failed: %v", err)
		}
		a, b := propNoMessages(out.Status), propNoMessages(later.Status)
		if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(out.Plan, later.Plan) || len(later.Actions) > 0 || len(later.Events) > 0 {
			return fmt.Sprintf("RequeueAfter %s, but %s later things change: events %s actions %s\n%s",
				out.RequeueAfter, d, propJSON(later.Events), propJSON(later.Actions), propDiff(a, b))
		}
		return ""
	}
}

// (extra) Progressing means the rollout waits for something that happens
// without a person: a requeue (pause end, progress deadline), or the
// analysis run that gates the current step. Anything else is a hang that
// says "Progressing".
func propWayForward() propCheck {
	return func(c *propCtx) string {
		in, out := c.in, c.out
		st := &out.Status
		if st.Phase != v1alpha1.PhaseProgressing || out.RequeueAfter > 0 || st.CurrentStepIndex == nil {
			return ""
		}
		steps, err := compile(in.Rollout.Spec.Strategy)
		if err != nil {
			return err.Error()
		}
		i := int(*st.CurrentStepIndex)
		if i < len(steps) && steps[i].kind == stepAnalysis {
			for _, r := range st.Analysis {
				if r.StepIndex != nil && int(*r.StepIndex) == i && r.Phase == v1alpha1.AnalysisRunning && !r.Terminated {
					return ""
				}
			}
		}
		return fmt.Sprintf("Progressing with nothing to wait for: %q; runs %s", st.Message, propJSON(st.Analysis))
	}
}

// (extra) A request that matches a route to the canary (dark release,
// header route, preview, session affinity) is served by the canary, even
// when it also matches another route's conditions.
func propMatchRoutesReachCanary() propCheck {
	return func(c *propCtx) string {
		in, out := c.in, c.out
		for _, h := range out.Plan.Hosts {
			if !slices.Contains(in.Rollout.Spec.Service.Hosts, h.Name) {
				continue
			}
			for _, r := range h.Routes {
				if len(r.Match) == 0 || len(r.Destinations) != 1 || r.Destinations[0].Subset != plan.Canary {
					continue
				}
				for _, m := range r.Match {
					base := propRequest{}
					if !base.satisfy(m) {
						continue
					}
					try := []propRequest{base}
					for _, other := range h.Routes {
						for _, om := range other.Match {
							if req := base.clone(); req.satisfy(om) {
								try = append(try, req)
							}
						}
					}
					for _, req := range try {
						served := propServe(h, req)
						if served == nil || len(served.Destinations) != 1 || served.Destinations[0].Subset != plan.Canary {
							name := "no route"
							if served != nil {
								name = fmt.Sprintf("route %q %s", served.Name, propJSON(served.Destinations))
							}
							return fmt.Sprintf("host %q: request %s matches route %q to the canary, but is served by %s", h.Name, req, r.Name, name)
						}
					}
				}
			}
		}
		return ""
	}
}

// propRequest is a request built to satisfy matches: headers present with
// values, headers required absent, a path and cookies.
type propRequest struct {
	headers map[string]string
	absent  map[string]bool
	path    string
	cookies map[string]string
}

func (q propRequest) clone() propRequest {
	return propRequest{headers: maps.Clone(q.headers), absent: maps.Clone(q.absent), path: q.path, cookies: maps.Clone(q.cookies)}
}

func (q propRequest) String() string {
	return fmt.Sprintf("{headers %v absent %v path %q cookies %v}", q.headers, slices.Sorted(maps.Keys(q.absent)), q.path, q.cookies)
}

var propRegexValues = []string{"qa-1", "beta-7", "jason", "true", "acme", "Mozilla/5.0"}

// satisfy extends q so that it matches m, or reports that it cannot.
func (q *propRequest) satisfy(m plan.Match) bool {
	if q.headers == nil {
		q.headers, q.absent, q.cookies = map[string]string{}, map[string]bool{}, map[string]string{}
	}
	for _, h := range m.Headers {
		v, set := q.headers[h.Name]
		switch h.Kind {
		case plan.HeaderAbsent:
			if set {
				return false
			}
			q.absent[h.Name] = true
			continue
		case plan.HeaderExact:
			if set && v != h.Value {
				return false
			}
			v = h.Value
		case plan.HeaderPrefix:
			if set && !strings.HasPrefix(v, h.Value) {
				return false
			}
			if !set {
				v = h.Value + "x"
			}
		case plan.HeaderRegex:
			re, err := regexp.Compile("^(?:" + h.Value + ")$")
			if err != nil {
				return false
			}
			if !set {
				i := slices.IndexFunc(propRegexValues, re.MatchString)
				if i < 0 {
					return false
				}
				v = propRegexValues[i]
			}
			if !re.MatchString(v) {
				return false
			}
		case plan.HeaderPresent:
			if !set {
				v = "1"
			}
		}
		if q.absent[h.Name] {
			return false
		}
		q.headers[h.Name] = v
	}
	if u := m.URI; u != nil {
		switch {
		case q.path == "" && u.Prefix:
			q.path = u.Value + "x"
		case q.path == "":
			q.path = u.Value
		case u.Prefix && !strings.HasPrefix(q.path, u.Value), !u.Prefix && q.path != u.Value:
			return false
		}
	}
	for _, c := range m.Cookies {
		if v, ok := q.cookies[c.Name]; ok && v != c.Value {
			return false
		}
		q.cookies[c.Name] = c.Value
	}
	return true
}

func (q propRequest) matches(m plan.Match) bool {
	for _, h := range m.Headers {
		v, set := q.headers[h.Name]
		switch h.Kind {
		case plan.HeaderAbsent:
			if set {
				return false
			}
		case plan.HeaderExact:
			if !set || v != h.Value {
				return false
			}
		case plan.HeaderPrefix:
			if !set || !strings.HasPrefix(v, h.Value) {
				return false
			}
		case plan.HeaderRegex:
			if !set || !regexp.MustCompile("^(?:"+h.Value+")$").MatchString(v) {
				return false
			}
		case plan.HeaderPresent:
			if !set {
				return false
			}
		}
	}
	if u := m.URI; u != nil {
		path := q.path
		if path == "" {
			path = "/"
		}
		if u.Prefix && !strings.HasPrefix(path, u.Value) || !u.Prefix && path != u.Value {
			return false
		}
	}
	for _, c := range m.Cookies {
		if q.cookies[c.Name] != c.Value {
			return false
		}
	}
	return true
}

// propServe is the first route of h whose match holds for q.
func propServe(h plan.Host, q propRequest) *plan.Route {
	for i, r := range h.Routes {
		if len(r.Match) == 0 || slices.ContainsFunc(r.Match, q.matches) {
			return &h.Routes[i]
		}
	}
	return nil
}

func propNoMessages(st v1alpha1.RolloutStatus) v1alpha1.RolloutStatus {
	st = *st.DeepCopy()
	st.Message = ""
	for i := range st.Conditions {
		st.Conditions[i].Message = ""
	}
	return st
}

// (e) A status that went through JSON (as it does through the API server or
// the standalone store) resumes exactly: from a random Step on, a twin fed
// the round-tripped status and the same observations produces the same
// outputs at every Step.
func propJSONRoundTrip() propCheck {
	var twin *v1alpha1.RolloutStatus
	split := -1
	return func(c *propCtx) string {
		if split < 0 {
			split = 1 + rand.New(rand.NewPCG(c.w.seed, 0x150)).IntN(c.steps-1)
		}
		if c.i < split {
			return ""
		}
		if c.i == split {
			b, err := json.Marshal(c.pre.Rollout.Status)
			if err != nil {
				return err.Error()
			}
			twin = &v1alpha1.RolloutStatus{}
			if err := json.Unmarshal(b, twin); err != nil {
				return err.Error()
			}
			if propJSON(twin) != propJSON(c.pre.Rollout.Status) {
				return "status changes in a JSON round trip:\n" + propDiff(c.pre.Rollout.Status, *twin)
			}
		}
		in := propCopyInput(c.pre)
		in.Rollout.Status = *twin
		out, err := propStep(in)
		if err != nil {
			return fmt.Sprintf("Step on the status round-tripped at step %d failed: %v", split, err)
		}
		if !reflect.DeepEqual(c.out.Plan, out.Plan) || propJSON(c.out) != propJSON(out) {
			return fmt.Sprintf("status round-tripped at step %d: outputs differ:\n%s", split, propDiff(c.out, out))
		}
		twin = &out.Status
		return ""
	}
}

func propJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// propDiff shows where the indented JSON of a and b first differ.
func propDiff(a, b any) string {
	ja, _ := json.MarshalIndent(a, "", "  ")
	jb, _ := json.MarshalIndent(b, "", "  ")
	if bytes.Equal(ja, jb) {
		return "  (same JSON; they differ in representation only, e.g. nil vs empty or time zone)"
	}
	return simLineDiff(string(ja), string(jb))
}

// propPersistedPlan: the plan PersistedPlan rebuilds from the persisted
// status is the plan Step published, content and version, so a follower
// replica serves exactly what the leader decided.
func propPersistedPlan() propCheck {
	return func(c *propCtx) string {
		ro := c.pre.Rollout.DeepCopy()
		ro.Status = *c.out.Status.DeepCopy()
		p, err := PersistedPlan(ro)
		if err != nil {
			return err.Error()
		}
		if p.Version != c.out.Plan.Version || propJSON(p) != propJSON(c.out.Plan) {
			return "rebuilt plan differs from the published one:\n" + propDiff(c.out.Plan, p)
		}
		return ""
	}
}
