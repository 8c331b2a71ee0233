package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/standalone/store"
)

// AnalysisDriver is the Analyzer of standalone mode: each run measures in
// a goroutine of its own through analysis.Advance, so a slow Prometheus
// never holds up the engine loop, and its state is handed to the loop to
// persist, from which a restarted runner resumes it without repeating or
// skipping a measurement.
type AnalysisDriver struct {
	measurer analysis.Measurer
	now      func() time.Time
	log      logr.Logger
	base     context.Context

	changed chan struct{}
	mu      sync.Mutex
	runs    map[string]*drivenRun
	wg      sync.WaitGroup
}

type drivenRun struct {
	cancel context.CancelFunc
	obs    engine.AnalysisObservation
	saved  json.RawMessage
}

// NewAnalysisDriver measures with m until ctx ends.
func NewAnalysisDriver(ctx context.Context, m analysis.Measurer, now func() time.Time, log logr.Logger) *AnalysisDriver {
	if now == nil {
		now = time.Now
	}
	return &AnalysisDriver{measurer: m, now: now, log: log, base: ctx, changed: make(chan struct{}, 1), runs: map[string]*drivenRun{}}
}

// Start begins a run, or resumes it from saved; it does nothing for a run
// already known. A run that cannot be created (a template missing, an
// argument without value) is reported as an Error observation, so the
// engine sees the reason instead of waiting for ever.
func (d *AnalysisDriver) Start(key string, run engine.AnalysisRun, templates []*v1alpha1.AnalysisTemplate, saved json.RawMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.runs[run.Name]; ok {
		return nil
	}
	ns, _, err := store.SplitKey(key)
	if err != nil {
		return fmt.Errorf("analysis run %s: %w", run.Name, err)
	}
	ar, err := d.build(ns, run, templates, saved)
	if err != nil {
		d.runs[run.Name] = &drivenRun{cancel: func() {}, obs: engine.AnalysisObservation{Name: run.Name, Phase: v1alpha1.AnalysisError, Message: err.Error()}}
		d.signal()
		return err
	}
	ctx, cancel := context.WithCancel(d.base)
	dr := &drivenRun{cancel: cancel, obs: analysis.Observation(ar), saved: mustJSON(ar)}
	d.runs[run.Name] = dr
	d.wg.Add(1)
	go d.drive(ctx, dr, ar)
	return nil
}

func (d *AnalysisDriver) build(ns string, run engine.AnalysisRun, templates []*v1alpha1.AnalysisTemplate, saved json.RawMessage) (*v1alpha1.AnalysisRun, error) {
	if len(saved) > 0 {
		var ar v1alpha1.AnalysisRun
		if err := json.Unmarshal(saved, &ar); err == nil && ar.Name == run.Name {
			return &ar, nil
		}
		d.log.Info("saved analysis run state unreadable; starting the run afresh", "run", run.Name)
	}
	if len(templates) != len(run.Templates) {
		var names []string
		for _, t := range run.Templates {
			names = append(names, t.Name)
		}
		return nil, fmt.Errorf("analysis run %s: AnalysisTemplate(s) %v not all found in Git", run.Name, names)
	}
	ar, err := analysis.NewRun(run.Name, ns, templates, run.Args)
	if err != nil {
		return nil, fmt.Errorf("analysis run %s: %w", run.Name, err)
	}
	// A provider the configuration does not have (or a template address
	// it does not allow) fails the run now, not after each metric's error
	// limit.
	if c, ok := d.measurer.(runChecker); ok {
		if err := c.CheckRun(ar); err != nil {
			return nil, fmt.Errorf("analysis run %s: %w", run.Name, err)
		}
	}
	return ar, nil
}

// timedMeasurer times each measurement in the analysis series (the
// runner installs it, with the runner's registry), and passes CheckRun
// on to the Measurer it wraps.
type timedMeasurer struct {
	next   analysis.Measurer
	series *rolloutmetrics.Analysis
}

func (m timedMeasurer) Measure(ctx context.Context, q analysis.Query) analysis.Result {
	start := time.Now()
	res := m.next.Measure(ctx, q)
	if ctx.Err() == nil { // a stopped run's cut-short query says nothing of Prometheus
		m.series.ObserveMeasurement(time.Since(start), res.Err)
	}
	return res
}

func (m timedMeasurer) CheckRun(ar *v1alpha1.AnalysisRun) error {
	if c, ok := m.next.(runChecker); ok {
		return c.CheckRun(ar)
	}
	return nil
}

// runChecker is a Measurer that can tell, before measuring, that it will
// not serve a run's providers (analysis/prometheus.Measurer).
type runChecker interface {
	CheckRun(*v1alpha1.AnalysisRun) error
}

// drive measures until the run completes or is stopped.
func (d *AnalysisDriver) drive(ctx context.Context, dr *drivenRun, ar *v1alpha1.AnalysisRun) {
	defer d.wg.Done()
	for {
		out, err := analysis.Advance(ctx, ar, d.measurer, d.now)
		if err != nil && ctx.Err() != nil {
			return
		}
		obs := analysis.Observation(ar)
		d.mu.Lock()
		dr.obs, dr.saved = obs, mustJSON(ar)
		d.mu.Unlock()
		d.signal()
		if obs.Phase.Completed() {
			return
		}
		wait := out.RequeueAfter
		if len(out.Queries) > 0 {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Stop ends a run; its last state stays observable.
func (d *AnalysisDriver) Stop(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dr, ok := d.runs[name]; ok {
		dr.cancel()
	}
}

// Observe returns a run's state and its persisted form.
func (d *AnalysisDriver) Observe(name string) (engine.AnalysisObservation, json.RawMessage, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dr, ok := d.runs[name]
	if !ok {
		return engine.AnalysisObservation{}, nil, false
	}
	return dr.obs, dr.saved, true
}

// Changed is signalled when a run's state changes.
func (d *AnalysisDriver) Changed() <-chan struct{} { return d.changed }

// Wait returns once every run goroutine has ended (after the base context
// is done).
func (d *AnalysisDriver) Wait() { d.wg.Wait() }

func (d *AnalysisDriver) signal() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// An AnalysisRun is plain data; failing to marshal it is a bug.
		panic(fmt.Sprintf("runner: marshal analysis run: %v", err))
	}
	return b
}
