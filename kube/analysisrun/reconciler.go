// Package analysisrun is the analysis controller of controller mode: it
// measures AnalysisRun objects, which the Rollout reconciler
// (kube/controller) creates, terminates and deletes but never measures.
// docs/analysis.md ("The analysis controller") describes the behaviour;
// this comment the shape of the code.
//
// Reconcile is a thin loop around the pure analysis package, as the
// standalone runner's AnalysisDriver is without Kubernetes:
//
//	load (fresh) → start (Step, persist the schedule's anchor)
//	  → analysis.Advance (measure what is due) → persist → Events, metrics
//	  → requeue when the next measurement is due
//
// The run's status is the whole state: it records every measurement by
// index, so a new leader or a restarted process resumes without repeating
// or skipping one. Status is written through the status subresource with a
// resourceVersion precondition; on a conflict (the Rollout reconciler set
// spec.terminate meanwhile, say) the measurements already taken are
// replayed onto a fresh read instead of being taken again.
package analysisrun

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Name is the controller's name: its Event source (reportingController)
// and the controller label of controller-runtime's metrics.
const Name = "sluice-analysis"

// Defaults of the options.
const (
	// DefaultMaxConcurrentReconciles matches the controller configuration's
	// reconcile.maxConcurrentAnalysis default.
	DefaultMaxConcurrentReconciles = 10
	// DefaultMaxMeasurementTimeout caps a template's provider timeout
	// (default 30s) so that no template can hold a worker for long.
	DefaultMaxMeasurementTimeout = time.Minute
)

// Options configure the analysis controller; `sluice controller` fills
// them from its configuration.
type Options struct {
	// Prometheus are the configured providers and the template-address
	// policy: the configuration's prometheus section, the same as `sluice
	// run`'s (config.Prometheus.Options). Its Secrets are ignored: a
	// template's own address reads Secrets of the run's namespace only,
	// through the SecretReader.
	Prometheus prometheus.Options
	// MaxConcurrentReconciles bounds how many runs are measured at once.
	// A run waiting on a slow Prometheus holds one worker only; the
	// others keep measuring. 0 means DefaultMaxConcurrentReconciles.
	MaxConcurrentReconciles int
	// MaxMeasurementTimeout caps the timeout of one measurement, whatever
	// the template says. 0 means DefaultMaxMeasurementTimeout.
	MaxMeasurementTimeout time.Duration
	// Now is the clock; nil means time.Now. The analysis package never
	// reads one.
	Now func() time.Time
}

func (o Options) check() error {
	for _, p := range o.Prometheus.Providers {
		u, err := url.Parse(p.Address)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("analysis controller: Prometheus provider %q: address %q: want an http(s) URL such as http://prometheus.monitoring:9090", p.Name, p.Address)
		}
	}
	if o.MaxConcurrentReconciles < 0 || o.MaxMeasurementTimeout < 0 {
		return errors.New("analysis controller: MaxConcurrentReconciles and MaxMeasurementTimeout must not be negative")
	}
	return nil
}

// Setup registers the analysis controller with mgr, measuring with
// Prometheus (analysis/prometheus) and reading the Secrets that templates
// reference through mgr's API reader, one Get at a time: the manager
// neither watches nor caches Secrets. Like every controller-runtime
// controller it runs on the elected leader only.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := opts.check(); err != nil {
		return err
	}
	popts := opts.Prometheus
	popts.Secrets = SecretReader{Reader: mgr.GetAPIReader()}
	m := prometheus.New(popts)
	r := &Reconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder(Name),
		Measurer:                m,
		Now:                     opts.Now,
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		MaxMeasurementTimeout:   opts.MaxMeasurementTimeout,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return err
	}
	// Idle connections to Prometheus go when the manager stops.
	closer := manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		m.Close()
		return nil
	})
	if err := mgr.Add(closer); err != nil {
		return fmt.Errorf("set up analysis controller: %w", err)
	}
	return nil
}

// Reconciler measures AnalysisRuns. Client, APIReader, Recorder and
// Measurer are required; Setup fills them for a manager.
type Reconciler struct {
	// Client reads runs (the manager's cache) and writes their status.
	Client client.Client
	// APIReader reads a run from the API server when the cache may not
	// hold the latest status (mgr.GetAPIReader()).
	APIReader client.Reader
	// Recorder emits an Event for each metric and run that completes.
	Recorder events.EventRecorder
	// Measurer takes the measurements.
	Measurer analysis.Measurer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxConcurrentReconciles: see Options.
	MaxConcurrentReconciles int
	// MaxMeasurementTimeout: see Options.
	MaxMeasurementTimeout time.Duration

	mu sync.Mutex
	// written is the resourceVersion of each run's last status write by
	// this process: a cached run at that version is known to be current.
	written map[types.NamespacedName]version
	// rollouts names the Rollout of each run whose values the analysis
	// series show, to remove them when the run is gone.
	rollouts map[types.NamespacedName]string
}

type version struct {
	uid             types.UID
	resourceVersion string
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil || r.APIReader == nil:
		return errors.New("analysis controller: no Client or APIReader")
	case r.Recorder == nil:
		return errors.New("analysis controller: no Recorder")
	case r.Measurer == nil:
		return errors.New("analysis controller: no Measurer")
	}
	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = DefaultMaxConcurrentReconciles
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("analysisrun").
		// Creation and spec changes (terminate) only: status writes, our
		// own included, must not trigger a reconcile; measurements are
		// scheduled with RequeueAfter.
		For(&v1alpha1.AnalysisRun{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up analysis controller: %w", err)
	}
	return nil
}

// catchUp is the requeue delay of a run that still has measurements due
// (Advance stops after a bounded number): any positive delay puts it at
// the back of the queue, so other runs that are due get a turn.
const catchUp = time.Millisecond

// Reconcile takes the measurements of one run that are due and records
// them.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	run, err := r.load(ctx, req.NamespacedName)
	if err != nil {
		return r.fail(req.NamespacedName, err)
	}
	if !run.DeletionTimestamp.IsZero() {
		r.forget(req.NamespacedName)
		r.dropValues(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	// The persisted values, also of completed runs: after a restart or a
	// change of leader the series are back before the next measurement.
	r.showValues(run)
	if run.Status.Phase.Completed() {
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if run.Status.StartedAt == nil {
		// The first Step anchors the schedule (startedAt). It is persisted
		// before anything is measured against it, so that a measurement is
		// always recorded at the slot it was taken for, even if this
		// reconcile's write is lost and a later one starts over.
		started := run.DeepCopy()
		started.Status = analysis.Step(analysis.Input{Run: run, Now: r.now()}).Status
		r.checkProviders(started)
		if run, err = r.persist(ctx, run, started, nil); err != nil {
			return r.fail(req.NamespacedName, err)
		}
		if run.Status.Phase.Completed() {
			return ctrl.Result{}, nil
		}
	}
	mm := &measurer{next: r.Measurer, maxTimeout: r.maxTimeout()}
	measured := run.DeepCopy()
	if _, err := analysis.Advance(ctx, measured, mm, r.now); err != nil {
		// Only a cancelled ctx (shutdown, lost leadership) ends Advance
		// early; what it measured is dropped and measured again later.
		return ctrl.Result{}, err
	}
	if run, err = r.persist(ctx, run, measured, mm.results()); err != nil {
		return r.fail(req.NamespacedName, err)
	}
	return r.requeue(run), nil
}

// fail ends a reconcile on err; a run deleted meanwhile (the Rollout
// reconciler collects runs it no longer lists) is simply done.
func (r *Reconciler) fail(key types.NamespacedName, err error) (ctrl.Result, error) {
	if apierrors.IsNotFound(err) {
		r.forget(key)
		r.dropValues(key)
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

// requeue schedules the run's next measurement from its persisted status.
func (r *Reconciler) requeue(run *v1alpha1.AnalysisRun) ctrl.Result {
	out := analysis.Step(analysis.Input{Run: run, Now: r.now()})
	switch {
	case out.Status.Phase.Completed():
		return ctrl.Result{} // nothing more to measure
	case len(out.Queries) > 0:
		return ctrl.Result{RequeueAfter: catchUp}
	}
	return ctrl.Result{RequeueAfter: out.RequeueAfter}
}

// load reads the run. A run whose last status write was this process's,
// at the resourceVersion the cache holds, is current; any other (first
// seen since this process started, changed by someone else, or a cache
// that has not caught up with our own write) is read from the API server,
// so that nothing is measured again that a stale status does not show.
func (r *Reconciler) load(ctx context.Context, key types.NamespacedName) (*v1alpha1.AnalysisRun, error) {
	run := &v1alpha1.AnalysisRun{}
	if err := r.Client.Get(ctx, key, run); err != nil {
		return nil, wrapGet(key, err)
	}
	if run.Status.Phase.Completed() {
		return run, nil // final: no cache lag can make it otherwise
	}
	r.mu.Lock()
	w, ok := r.written[key]
	r.mu.Unlock()
	if ok && w == (version{run.UID, run.ResourceVersion}) {
		return run, nil
	}
	fresh := &v1alpha1.AnalysisRun{}
	if err := r.APIReader.Get(ctx, key, fresh); err != nil {
		return nil, wrapGet(key, err)
	}
	return fresh, nil
}

func wrapGet(key types.NamespacedName, err error) error {
	if apierrors.IsNotFound(err) {
		return err
	}
	return fmt.Errorf("get AnalysisRun %s: %w", key, err)
}

func (r *Reconciler) remember(run *v1alpha1.AnalysisRun) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written == nil {
		r.written = map[types.NamespacedName]version{}
	}
	r.written[client.ObjectKeyFromObject(run)] = version{run.UID, run.ResourceVersion}
}

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.written, key)
}

// runChecker is a Measurer that can tell, before measuring, that it will
// not serve a run's providers (analysis/prometheus.Measurer).
type runChecker interface {
	CheckRun(*v1alpha1.AnalysisRun) error
}

// checkProviders ends a starting run in Error when its metrics name a
// provider that is not configured, or an address where template addresses
// are off: a configuration problem, reported at once rather than after
// each metric's consecutive-error limit.
func (r *Reconciler) checkProviders(run *v1alpha1.AnalysisRun) {
	c, ok := r.Measurer.(runChecker)
	if !ok || run.Status.Phase.Completed() {
		return
	}
	if err := c.CheckRun(run); err != nil {
		run.Status.Phase = v1alpha1.AnalysisError
		run.Status.Message = truncate("cannot run: " + err.Error())
		run.Status.CompletedAt = &metav1.Time{Time: r.now()}
	}
}

func (r *Reconciler) maxTimeout() time.Duration {
	if r.MaxMeasurementTimeout > 0 {
		return r.MaxMeasurementTimeout
	}
	return DefaultMaxMeasurementTimeout
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
