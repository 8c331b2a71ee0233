// Package runner is the loop of `sluice run`: Git in, engine, xDS out, state
// on local disk. It is to the engine what etcd raft's node.run is to RawNode:
// it gathers observations, calls engine.Step, and carries out the output in
// the order the engine documents — persist, publish, act.
//
// One goroutine owns every Rollout's state; the data plane, analysis, Git
// and the HTTP API reach it through channels, so no engine step ever races
// another.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/standalone/store"
)

// Source is the Git side: the last good commit and a signal when it changes.
// *gitsync.Syncer satisfies it.
type Source interface {
	State() gitsync.State
	// Watch returns the state and a channel closed at its next change.
	Watch() (gitsync.State, <-chan struct{})
}

// Reverter pushes the revert commit the engine asks for after an automatic
// rollback. *gitsync.Syncer satisfies it.
type Reverter interface {
	Revert(ctx context.Context, req gitsync.RevertRequest) (gitsync.RevertResult, error)
}

// DataPlane publishes plans and reports what the proxies acknowledged.
type DataPlane interface {
	// SetPlans replaces every plan served, atomically.
	SetPlans(ctx context.Context, plans []plan.Plan) error
	// Observe says how the data plane answered the plan's version.
	Observe(p plan.Plan) engine.DataPlane
	// Changed is signalled when an acknowledgement or rejection arrives.
	Changed() <-chan struct{}
}

// EndpointSetter is implemented by data planes that learn where revisions
// run from the Rollouts themselves (standalone backends).
type EndpointSetter interface {
	SetEndpoints(namespace, service, revision string, addrs []string) error
}

// Analyzer measures analysis runs in the background.
type Analyzer interface {
	// Start begins a run, or resumes it from saved state after a restart;
	// starting a run that is already running does nothing.
	Start(key string, run engine.AnalysisRun, templates []*v1alpha1.AnalysisTemplate, saved json.RawMessage) error
	// Stop ends a run; its last state stays observable.
	Stop(name string)
	// Observe returns a run's state for the engine and in a form to persist.
	Observe(name string) (obs engine.AnalysisObservation, saved json.RawMessage, ok bool)
	// Changed is signalled when a run's state changes.
	Changed() <-chan struct{}
}

// Options wire a Runner.
type Options struct {
	Store    *store.Store
	Source   Source
	Reverter Reverter // nil disables Git write-back
	Plane    DataPlane
	Analysis Analyzer
	Notifier *notify.Notifier // nil: no notifications
	Log      logr.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// DefaultNamespace names Rollouts whose manifests have none.
	DefaultNamespace string
	// Registerer receives the per-Rollout metrics (rolloutmetrics: the
	// controller's names and labels); nil registers nowhere.
	Registerer prometheus.Registerer
}

// Runner drives every Rollout of a Git source.
type Runner struct {
	o Options

	commands chan commandRequest
	// pending commands per rollout key, applied at that rollout's next step.
	pending map[string][]commandRequest

	mu    sync.RWMutex
	views map[string]view // what the API reads, updated after each step
	ready bool
	// changed is closed and replaced whenever a view is (Changed).
	changed chan struct{}
	// wake asks the loop for a pass (requeue timers, API, shutdown,
	// finished background work).
	wake chan struct{}

	workMu sync.Mutex
	work   actions

	// gitGeneration is the source's state last signalled to the API's
	// watchers (signalGit); only the loop goroutine touches it.
	gitGeneration uint64

	// stored is what the state file holds of each Rollout, by key, as the
	// store returns it; nil: read it all at the next pass (storedState).
	// Only the loop goroutine touches it.
	stored map[string]store.Rollout

	metrics *rolloutmetrics.Metrics
	// analysis shows the analysis metrics' values and counts their
	// measurements, from the runs' persisted state; shownRuns is what
	// each run's were last set from, by rollout key and run name. Only
	// the loop goroutine touches shownRuns.
	analysis  *rolloutmetrics.Analysis
	shownRuns map[[2]string]shownRun
	// passes counts the passes begun, busy their time in nanoseconds
	// (benchmarks read them).
	passes atomic.Uint64
	busy   atomic.Int64
	// unchanged counts the steps found unchanged in memory, which were
	// neither encoded nor written (tests read it).
	unchanged atomic.Uint64
}

type view struct {
	ro   *v1alpha1.Rollout
	plan *plan.Plan
	// src is the snapshot's Rollout whose spec ro shows (nil: retired).
	src *v1alpha1.Rollout
}

type commandRequest struct {
	key   string
	cmd   engine.Command
	reply chan commandReply
}

type commandReply struct {
	record *v1alpha1.CommandRecord
	err    error
}

// New checks the options and builds a Runner.
func New(o Options) (*Runner, error) {
	switch {
	case o.Store == nil:
		return nil, errors.New("runner: a store is required")
	case o.Source == nil:
		return nil, errors.New("runner: a Git source is required")
	case o.Plane == nil:
		return nil, errors.New("runner: a data plane is required")
	case o.Analysis == nil:
		return nil, errors.New("runner: an analyzer is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	m, am := rolloutmetrics.New(), rolloutmetrics.NewAnalysis()
	if o.Registerer != nil {
		if err := m.Register(o.Registerer); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		if err := am.Register(o.Registerer); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	// The driver's measurements are timed in the same series as the
	// controller's (sluice_analysis_measurement_duration_seconds). It has
	// started no run yet: runs start from the loop.
	if d, ok := o.Analysis.(*AnalysisDriver); ok {
		d.measurer = timedMeasurer{next: d.measurer, series: am}
	}
	return &Runner{
		o:        o,
		commands: make(chan commandRequest),
		pending:  map[string][]commandRequest{},
		views:    map[string]view{},
		changed:  make(chan struct{}),
		wake:     make(chan struct{}, 1),
		work: actions{
			reverting: map[string]string{},
			reverted:  map[string]engine.RevertResult{},
			sending:   map[string]bool{},
		},
		metrics:   m,
		analysis:  am,
		shownRuns: map[[2]string]shownRun{},
	}, nil
}

// Ready reports whether the stored plans are served again after a start;
// before that nothing advances and /readyz says so.
func (r *Runner) Ready() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.ready {
		return errors.New("restoring the stored traffic plans")
	}
	return nil
}

// Run restores the stored plans, then reconciles until ctx ends. On return
// every step taken is on disk; the data plane keeps serving the last plans
// for as long as its server runs.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.restore(ctx); err != nil {
		return err
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Watch before the pass, so a change during the pass wakes the next.
		_, gitChanged := r.o.Source.Watch()
		next := r.pass(ctx)
		r.signalGit()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-ctx.Done():
			r.failPending(ctx.Err())
			return nil
		case <-timer.C:
		case <-gitChanged:
		case <-r.o.Plane.Changed():
		case <-r.o.Analysis.Changed():
		case <-r.wake:
		case c := <-r.commands:
			r.pending[c.key] = append(r.pending[c.key], c)
		}
	}
}

// restore serves exactly the plans that were in force before a restart,
// before any step, so reconnecting proxies see no change, and restarts the
// analysis runs the stored status says are running.
func (r *Runner) restore(ctx context.Context) error {
	stored, err := r.o.Store.List()
	if err != nil {
		return fmt.Errorf("runner: read state: %w", err)
	}
	var plans []plan.Plan
	for _, s := range stored {
		if s.Plan != nil {
			plans = append(plans, *s.Plan)
			r.setEndpoints(s.Plan, s.Status)
		}
		r.record(s.Key, s.Status, s.Status)
		if s.Status != nil {
			runs, err := r.o.Store.Runs(s.Key)
			if err != nil {
				r.o.Log.Error(err, "read stored analysis runs for their metrics", "rollout", s.Key)
			}
			r.showRuns(s.Key, s.Status, runs, true)
		}
	}
	if err := r.o.Plane.SetPlans(ctx, plans); err != nil {
		return fmt.Errorf("runner: serve stored plans: %w", err)
	}
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	r.o.Log.Info("restored state", "rollouts", len(stored), "plans", len(plans))
	return nil
}

func (r *Runner) failPending(err error) {
	for k, cs := range r.pending {
		for _, c := range cs {
			c.reply <- commandReply{err: err}
		}
		delete(r.pending, k)
	}
}

// setEndpoints tells the data plane where the plan's revisions run, from
// the backends recorded in status, before the plan is served.
func (r *Runner) setEndpoints(p *plan.Plan, st *v1alpha1.RolloutStatus) {
	es, ok := r.o.Plane.(EndpointSetter)
	if !ok || st == nil {
		return
	}
	backends := []*v1alpha1.Backend{st.StableBackend, st.CanaryBackend}
	for _, x := range st.ExtraRevisions {
		backends = append(backends, x.Backend)
	}
	for _, b := range backends {
		if b == nil {
			continue
		}
		if err := es.SetEndpoints(p.Namespace, p.Service, b.Version, b.Endpoints); err != nil {
			r.o.Log.Error(err, "set endpoints", "service", p.Service, "revision", b.Version)
		}
	}
}

// record updates the metrics from a persisted status; prev is the status
// it replaced, so that analysis runs are counted once.
func (r *Runner) record(key string, prev, cur *v1alpha1.RolloutStatus) {
	ns, name, err := store.SplitKey(key)
	if err != nil || cur == nil {
		return
	}
	r.metrics.Record(ns, name, prev, cur)
}

// shownRun is what a run's analysis series were last set from: a hash
// of its persisted state, so that an unchanged run is not decoded again,
// and its state, from which the next one's new measurements are counted.
type shownRun struct {
	hash  uint64
	state v1alpha1.AnalysisRunState
}

// showRuns sets the analysis metrics' series from the persisted state of
// the Rollout's runs, counts the measurements recorded since the last
// state seen (restored: a state read at start, whose measurements were
// counted before the restart, if at all), and drops the series of runs
// the status lists no more (a new rollout began), as the controller drops
// a deleted AnalysisRun's.
func (r *Runner) showRuns(key string, st *v1alpha1.RolloutStatus, runs map[string]json.RawMessage, restored bool) {
	ns, name, err := store.SplitKey(key)
	if err != nil {
		return
	}
	listed := make(map[string]bool, len(st.Analysis))
	for _, run := range st.Analysis {
		listed[run.Name] = true
		saved := runs[run.Name]
		if len(saved) == 0 {
			continue
		}
		rk := [2]string{key, run.Name}
		h := maphash.Bytes(runHashSeed, saved)
		prev, seen := r.shownRuns[rk]
		if seen && prev.hash == h {
			continue
		}
		var ar v1alpha1.AnalysisRun
		if err := json.Unmarshal(saved, &ar); err != nil {
			continue // detail.go reports unreadable runs; here, no values
		}
		if !restored {
			r.analysis.CountMeasurements(ns, &prev.state, &ar.Status)
		}
		// Only the counters are needed of the state: no measurement list.
		counts := ar.Status
		counts.Metrics = make([]v1alpha1.MetricResult, len(ar.Status.Metrics))
		for i, m := range ar.Status.Metrics {
			m.Measurements = nil
			counts.Metrics[i] = m
		}
		r.shownRuns[rk] = shownRun{hash: h, state: counts}
		r.analysis.Observe(ns, name, &ar)
	}
	// Every run decoded above is among Runs (Observe keeps its
	// thresholds), so this forgets it here too.
	for _, run := range r.analysis.Runs(ns, name) {
		if !listed[run] {
			r.analysis.Drop(ns, name, run)
			delete(r.shownRuns, [2]string{key, run})
		}
	}
}

// runHashSeed seeds the hashes of shownRuns.
var runHashSeed = maphash.MakeSeed()
