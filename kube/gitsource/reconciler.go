package gitsource

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Name is the controller's name (logs, metrics).
const Name = "gitsource"

// Finalizer holds a GitSource until its objects are released
// (gitapply.Release): deleting it is deleting its files.
const Finalizer = "sluice.dev/gitsource"

// AnnotationRequestedSync asks for a sync now: any change of its value
// (the push webhook writes the time) makes the leader fetch at once.
const AnnotationRequestedSync = "sluice.dev/requested-sync"

// DefaultRecheck is how often a GitSource is reconciled although nothing
// about it changed: Secrets are read, not watched, so a changed Secret is
// picked up within this time (or at once by touching the GitSource).
const DefaultRecheck = 5 * time.Minute

// Reconciler runs one gitapply.Applier per GitSource on the leader:
// created → started; spec or Secret changed → restarted with the new
// configuration; suspended → stopped; deleted → stopped, its objects
// released (Rollouts marked removed from Git, templates deleted), its
// mirror removed. It writes each GitSource's status from its Applier's
// state. It is also a leader-only Runnable: the Appliers live as long as
// its Start.
type Reconciler struct {
	// Client is the manager's client: GitSources from the cache, writes
	// to the API server.
	Client client.Client
	// APIReader reads Secrets, one Get each (mgr.GetAPIReader()).
	APIReader client.Reader
	// Sources is where the Appliers are registered, for the Rollout
	// reconciler's Reverter and the Istio Publisher's Declarations.
	Sources *gitapply.Sources
	// StateDir holds the mirrors, StateDir/gitsources/<namespace>/<name>.
	StateDir string
	// Registerer receives gitsync's metrics (source label
	// "<namespace>/<name>").
	Registerer prometheus.Registerer
	// AllowFileURLs permits file:// URLs (tests, local mirrors). Off,
	// they are refused: they would read the controller's own disk.
	AllowFileURLs bool
	// FetchLimits bound every GitSource's fetches (gitSources.limits of
	// the controller's configuration); zero fields take gitsync's
	// defaults. They are the operator's: a GitSource cannot set its own,
	// or a tenant could raise them.
	FetchLimits gitsync.FetchLimits
	// Resync is the Appliers' (gitapply.Options.Resync).
	Resync time.Duration
	// Recheck: see DefaultRecheck.
	Recheck time.Duration
	Log     logr.Logger

	events chan event.GenericEvent

	mu      sync.Mutex
	base    context.Context // set by Start
	started chan struct{}
	running map[string]*runner
}

// runner is one GitSource's running Applier.
type runner struct {
	applier     *gitapply.Applier
	fingerprint string
	// requested is the requested-sync value last acted on.
	requested string
	cancel    context.CancelFunc
	done      chan struct{}
}

func (r *Reconciler) init() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started == nil {
		r.started = make(chan struct{})
		r.running = map[string]*runner{}
		r.events = make(chan event.GenericEvent, 1024)
	}
}

// SetupWithManager registers the controller and the Runnable.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil || r.APIReader == nil || r.Sources == nil:
		return errors.New("gitsource controller: Client, APIReader and Sources are required")
	case r.StateDir == "":
		return errors.New("gitsource controller: StateDir is required")
	}
	r.init()
	if r.Log.GetSink() == nil {
		r.Log = mgr.GetLogger().WithName(Name)
	}
	r.Recheck = cmp.Or(r.Recheck, DefaultRecheck)
	if err := mgr.Add(r); err != nil {
		return fmt.Errorf("gitsource controller: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(Name).
		For(&v1alpha1.GitSource{}, builder.WithPredicates(specOrAnnotations())).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		// Its writes carry the resourceVersion they read: a conflict is
		// retried from a fresh read, at debug level.
		Complete(controller.QuietConflicts(r))
}

// specOrAnnotations lets through what the reconciler acts on: a spec
// change, an annotation (requested-sync), the deletion; not its own
// status writes.
func specOrAnnotations() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
		predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectNew.GetDeletionTimestamp().Equal(e.ObjectOld.GetDeletionTimestamp())
		}})
}

// NeedLeaderElection is true: only the leader applies Git.
func (r *Reconciler) NeedLeaderElection() bool { return true }

// Start keeps the Appliers running until ctx ends, then stops them all.
// Their registrations stay, so a Rollout's declarations do not vanish
// while the manager shuts down.
func (r *Reconciler) Start(ctx context.Context) error {
	r.init()
	r.mu.Lock()
	r.base = ctx
	close(r.started)
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	runners := r.running
	r.running = map[string]*runner{}
	r.mu.Unlock()
	for _, run := range runners {
		run.cancel()
		<-run.done
	}
	return nil
}

// Reconcile follows one GitSource: get it, then release, suspend, or
// (re)start its Applier, and write its status.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	select {
	case <-r.started:
	case <-ctx.Done():
		return reconcile.Result{}, ctx.Err()
	}
	gs := &v1alpha1.GitSource{}
	if err := r.Client.Get(ctx, req.NamespacedName, gs); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone without our finalizer (it was removed by hand): stop.
			r.stop(gitapply.GitSourceID(req.Namespace, req.Name), true)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	id := gitapply.GitSourceID(gs.Namespace, gs.Name)
	log := r.Log.WithValues("gitsource", id)
	if !gs.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.release(ctx, gs, log)
	}
	if !controllerutil.ContainsFinalizer(gs, Finalizer) {
		orig := gs.DeepCopy()
		controllerutil.AddFinalizer(gs, Finalizer)
		if err := r.Client.Patch(ctx, gs, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding the finalizer of GitSource %s: %w", id, err)
		}
	}
	if gs.Spec.Suspend {
		// Stopped, but still registered: the Rollouts it applied keep
		// their declarations and write-back.
		r.stop(id, false)
		return reconcile.Result{}, r.writeStatus(ctx, gs, statusWithout(gs, ready{metav1.ConditionUnknown, v1alpha1.GitSourceSuspended,
			"syncing is suspended; what was applied stays as it is"}))
	}
	run, err := r.ensure(ctx, gs, log)
	if errors.Is(err, errInvalid) || gitsync.KindOf(err) == gitsync.KindConfig {
		// A human must fix the spec or the Secret; look again at the
		// recheck (Secrets are not watched) or at the next spec change.
		log.Info("GitSource cannot run", "reason", err.Error())
		r.stop(id, false)
		return reconcile.Result{RequeueAfter: r.Recheck}, r.writeStatus(ctx, gs, statusWithout(gs, ready{metav1.ConditionFalse, v1alpha1.GitSourceInvalidSource, err.Error()}))
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if v := gs.Annotations[AnnotationRequestedSync]; v != "" && v != run.requested {
		run.requested = v
		log.Info("sync requested", "at", v)
		run.applier.Syncer().Trigger()
	}
	return reconcile.Result{RequeueAfter: r.Recheck}, r.writeStatus(ctx, gs, statusOf(gs, run.applier.State()))
}

// ensure returns the GitSource's runner, started or restarted so that it
// runs the GitSource's current configuration.
func (r *Reconciler) ensure(ctx context.Context, gs *v1alpha1.GitSource, log logr.Logger) (*runner, error) {
	id := gitapply.GitSourceID(gs.Namespace, gs.Name)
	sec, err := readSecret(ctx, r.APIReader, gs)
	if err != nil {
		return nil, err
	}
	cfg, err := configOf(gs, sec, r.AllowFileURLs)
	if err != nil {
		return nil, err
	}
	cfg.source.FetchLimits = r.FetchLimits
	fp := cfg.fingerprint()
	r.mu.Lock()
	run := r.running[id]
	r.mu.Unlock()
	if run != nil && run.fingerprint == fp {
		return run, nil
	}
	dir, err := mirrorDir(r.StateDir, gs.Namespace, gs.Name)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if run != nil {
		log.Info("GitSource changed: restarting its applier")
	}
	// The old Applier goes first: one Syncer per mirror at a time.
	r.stop(id, true)
	key := types.NamespacedName{Namespace: gs.Namespace, Name: gs.Name}
	a, err := gitapply.New(r.Client, gitapply.Options{
		Source: cfg.source,
		Sync: gitsync.Options{
			MirrorDir:  dir,
			Registerer: r.Registerer,
			WriteBack:  cfg.writeBack,
			// The tenancy rule: a commit with an object in another
			// namespace is rejected whole, like any invalid commit.
			Namespace: gs.Namespace,
		},
		DefaultNamespace: gs.Namespace,
		WriteBack:        true,
		Resync:           r.Resync,
		SourceID:         id,
		OnChange:         func() { r.notify(key) },
		Log:              log,
	})
	if err != nil {
		return nil, err
	}
	if err := r.Sources.Add(a); err != nil {
		return nil, err
	}
	return r.start(id, a, fp), nil
}

// start runs a until stop or the end of Start.
func (r *Reconciler) start(id string, a *gitapply.Applier, fingerprint string) *runner {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithCancel(r.base)
	run := &runner{applier: a, fingerprint: fingerprint, cancel: cancel, done: make(chan struct{})}
	r.running[id] = run
	go func() {
		defer close(run.done)
		if err := a.Start(ctx); err != nil {
			r.Log.Error(err, "applier stopped", "gitsource", id)
		}
	}()
	return run
}

// stop stops the Applier of id, if it runs, and waits for it; with
// unregister, it also leaves the registry.
func (r *Reconciler) stop(id string, unregister bool) {
	r.mu.Lock()
	run := r.running[id]
	delete(r.running, id)
	r.mu.Unlock()
	if run != nil {
		run.cancel()
		<-run.done
	}
	if unregister {
		r.Sources.Remove(id)
	}
}

// notify asks for a reconcile of key after its Applier's state changed;
// it never blocks (a full queue is caught up by the recheck).
func (r *Reconciler) notify(key types.NamespacedName) {
	gs := &v1alpha1.GitSource{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case r.events <- event.GenericEvent{Object: gs}:
	default:
	}
}

// release handles a deleted GitSource as if its files were deleted: its
// Applier stops, its Rollouts are marked removed from Git (and retired by
// the reconciler: traffic on stable, routes kept), its AnalysisTemplates
// are deleted, its mirror is removed, and then its finalizer.
func (r *Reconciler) release(ctx context.Context, gs *v1alpha1.GitSource, log logr.Logger) error {
	id := gitapply.GitSourceID(gs.Namespace, gs.Name)
	r.stop(id, true)
	if !controllerutil.ContainsFinalizer(gs, Finalizer) {
		return nil
	}
	marked, deleted, err := gitapply.Release(ctx, r.Client, id, gs.Status.LastAppliedCommit, log)
	if err != nil {
		return err
	}
	if dir, err := mirrorDir(r.StateDir, gs.Namespace, gs.Name); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			log.Error(err, "cannot remove the mirror of a deleted GitSource", "dir", dir)
		}
	}
	orig := gs.DeepCopy()
	controllerutil.RemoveFinalizer(gs, Finalizer)
	if err := r.Client.Patch(ctx, gs, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing the finalizer of GitSource %s: %w", id, err)
	}
	log.Info("GitSource deleted: its objects are released", "rolloutsMarkedRemoved", marked, "templatesDeleted", deleted)
	return nil
}

// writeStatus patches the status when it changed, carrying the
// resourceVersion it was read at: a GitSource changed meanwhile answers
// 409 and the reconcile is retried from a fresh read.
func (r *Reconciler) writeStatus(ctx context.Context, gs *v1alpha1.GitSource, st v1alpha1.GitSourceStatus) error {
	if equality.Semantic.DeepEqual(gs.Status, st) {
		return nil
	}
	orig := gs.DeepCopy()
	gs.Status = st
	if err := r.Client.Status().Patch(ctx, gs, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("writing the status of GitSource %s/%s: %w", gs.Namespace, gs.Name, err)
	}
	return nil
}
