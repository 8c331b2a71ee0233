// Package controller is Sluice's Kubernetes controller mode: the Rollout
// reconciler, a thin loop around the engine (rollout/engine), as the
// standalone runner is in standalone mode. docs/controller.md describes the
// behaviour; this comment the shape of the code.
//
// Reconcile has Flux's fixed skeleton: get the Rollout, make a status
// patcher (optimistic concurrency on the status subresource), defer the
// summary (controller condition, metrics, Events, status patch), then run
// small sub-reconcilers in the order the engine prescribes:
//
//	observe → step → persist status → publish plan → scale → actions
//
// with one exception where the data plane's answer is the write itself
// (stepOnWrite, between step and persist): a new plan is published and
// its acknowledgement stepped on before the status is persisted, so that
// one status write records both.
//
// observe gathers every observation once into a per-reconcile context;
// nothing after step looks at the world to decide anything. The engine,
// xds, analysis and gitsync packages never import controller-runtime; this
// package adapts them to it.
package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Name is the controller's name: its field manager, Event source and the
// controller label of controller-runtime's metrics.
const Name = "sluice-rollout"

// DefaultAckPollInterval is how often an unacknowledged plan is looked at
// again when no Wake event arrives. Acknowledgers that can signal (the xDS
// tracker) should use Wake; the poll is the safety net that keeps a lost
// signal from stalling a rollout.
const DefaultAckPollInterval = 2 * time.Second

// Reconciler reconciles Rollouts. Client, Events (or Recorder),
// Publisher and Acknowledger are required.
type Reconciler struct {
	client.Client
	// Events emits an events.k8s.io/v1 Event for every engine Event, and
	// warnings for what the reconciler could not do (see event).
	Events EventRecorder
	// Recorder is the older core/v1 recorder, used only when Events is
	// nil; the manager sets Events.
	Recorder record.EventRecorder
	// Notifier, when set, sends a notification of every engine Event its
	// targets select, recorded in status first (notifications.go).
	Notifier     Notifier
	Publisher    Publisher
	Acknowledger Acknowledger
	// Reverter performs GitRevert actions; without one they are reported
	// as a Warning Event.
	Reverter Reverter
	// GitSync, when set, gives status.gitSync; the Git sources wake a
	// Rollout (Wake) when its state changes.
	GitSync GitSyncer
	// Now is the clock; nil means time.Now. The engine never reads one.
	Now func() time.Time
	// RevisionHistory is how many idle ReplicaSets (zero replicas) are
	// kept; 0 means workload.DefaultRevisionHistory, negative keeps none.
	RevisionHistory int
	// AckPollInterval: see DefaultAckPollInterval; 0 means the default.
	AckPollInterval time.Duration
	// Wake enqueues the Rollout of each event from any of the channels:
	// when a proxy ACKs (xDS), when Git changes what a Rollout's routing
	// is merged with (the Git applier).
	Wake []<-chan event.GenericEvent
	// MaxConcurrentReconciles bounds parallel reconciles (different
	// Rollouts only; one Rollout is never reconciled twice at once).
	MaxConcurrentReconciles int

	// Set by SetupWithManager (see owned.go): owned objects are indexed
	// by their Rollout in the manager's cache, which Client must read
	// from (mgr.GetClient()), and the echoes of the reconciler's own
	// writes to them are not reconciled.
	indexed bool
	writes  *ownWrites
	// reverts holds Git write-back results for the next reconcile.
	reverts revertResults
	// outbox tracks this process' sends of pending notifications.
	outbox *outbox
}

// SetupWithManager registers the reconciler. Like every controller-runtime
// controller it needs leader election (NeedLeaderElection is true), so with
// several replicas only the leader advances rollouts.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return r.setup(mgr, r)
}

// setup registers rec, which is r or (in benchmarks) a wrapper around it.
func (r *Reconciler) setup(mgr ctrl.Manager, rec reconcile.Reconciler) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := indexOwned(mgr, &appsv1.ReplicaSet{}, &v1alpha1.AnalysisRun{}); err != nil {
		return err
	}
	r.indexed, r.writes = true, newOwnWrites()
	b := ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		// Status writes (ours included) change neither generation nor
		// annotations; they must not trigger a reconcile of their own.
		For(&v1alpha1.Rollout{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.ReplicaSet{}, builder.WithPredicates(r.writes.predicate())).
		Owns(&v1alpha1.AnalysisRun{}, builder.WithPredicates(r.writes.predicate())).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)})
	wake := r.Wake
	if r.Notifier != nil {
		r.outbox = newOutbox()
		wake = append(slices.Clip(wake), r.outbox.wake)
	}
	for _, ch := range wake {
		if ch != nil {
			b = b.WatchesRawSource(source.Channel(ch, &handler.EnqueueRequestForObject{}))
		}
	}
	if err := b.Complete(QuietConflicts(rec)); err != nil {
		return fmt.Errorf("set up rollout controller: %w", err)
	}
	return nil
}

// CacheByObject narrows the manager's caches of ReplicaSets and Services
// to Sluice's own (ReplicaSets with a revision label, the per-revision
// Services it manages), so the rest of a large cluster costs the
// controller no memory, and keeps the managedFields of the objects the
// Rollout controller reads out of the cache: nothing reads them, and they
// are a good part of each object's size and of every deep copy a cached
// read makes. Pass it as cache.Options.ByObject.
func CacheByObject() map[client.Object]cache.ByObject {
	rs := labels.NewSelector()
	if req, err := labels.NewRequirement(workload.LabelRevision, selection.Exists, nil); err == nil {
		rs = rs.Add(*req)
	}
	svc := labels.SelectorFromSet(labels.Set{workload.LabelManagedBy: workload.ManagedBy})
	strip := cache.TransformStripManagedFields()
	return map[client.Object]cache.ByObject{
		&appsv1.ReplicaSet{}:    {Label: rs, Transform: strip},
		&corev1.Service{}:       {Label: svc, Transform: strip},
		&v1alpha1.Rollout{}:     {Transform: strip},
		&v1alpha1.AnalysisRun{}: {Transform: strip},
	}
}

func (r *Reconciler) check() error {
	switch {
	case r.Client == nil:
		return errors.New("rollout reconciler: no Client")
	case r.Events == nil && r.Recorder == nil:
		return errors.New("rollout reconciler: no Events recorder")
	case r.Publisher == nil:
		return errors.New("rollout reconciler: no Publisher")
	case r.Acknowledger == nil:
		return errors.New("rollout reconciler: no Acknowledger")
	}
	return nil
}

// subReconciler is one stage of a reconcile. Stages run in order and the
// first error ends the reconcile; rc carries what earlier stages gathered.
type subReconciler func(ctx context.Context, sp *statusPatcher, rc *reconcileContext) error

// Reconcile runs one Rollout through the engine once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	start := time.Now()
	defer func() { observeReconcile(resultLabel(retErr), time.Since(start)) }()

	ro := &v1alpha1.Rollout{}
	if err := r.Get(ctx, req.NamespacedName, ro); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get rollout %s: %w", req.NamespacedName, err)
	}
	if !ro.DeletionTimestamp.IsZero() {
		// Owner references delete the ReplicaSets and AnalysisRuns.
		return ctrl.Result{}, nil
	}
	rc := newReconcileContext(ro, r.now())
	sp := newStatusPatcher(r.Client, ro)
	defer func() { res, retErr = r.summarize(ctx, sp, rc, res, retErr) }()

	stages := []subReconciler{r.observe, r.step, r.stepOnWrite, r.persist, r.publish, r.scale, r.act}
	if removedFromGit(ro) {
		stages = []subReconciler{r.observe, r.retire, r.persist, r.publish, r.scale, r.act}
	}
	for _, sub := range stages {
		if err := sub(ctx, sp, rc); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.reverts.observed(req.NamespacedName, rc.obs.GitRevert)
	after := rc.requeueAfter(r.ackPoll())
	if rc.reverted && (after == 0 || after > revertRequeue) {
		after = revertRequeue
	}
	if len(rc.ro.Status.PendingNotifications) > 0 && (after == 0 || after > notifyPoll) {
		after = notifyPoll
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// Condition types and reasons the reconciler owns; the engine owns Ready,
// Progressing, Paused and Aborted.
const (
	// ConditionReconciled is True when the last persisted status was
	// carried out: plan published, replicas scaled, actions done. False
	// names the stage that failed and its error. While it is True, a new
	// generation's status carries it along in the same write
	// (carryReconciled), and only a failure costs a write of its own.
	ConditionReconciled = "Reconciled"

	ReasonSucceeded     = "Succeeded"
	ReasonInvalidSpec   = "InvalidSpec"
	ReasonPublishFailed = "PublishFailed"
	ReasonScaleFailed   = "ScaleFailed"
	ReasonActionFailed  = "ActionFailed"
	ReasonStatusFailed  = "StatusWriteFailed"
)

// stageError carries the condition reason of the stage that failed.
type stageError struct {
	reason string
	err    error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func stageErr(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &stageError{reason: reason, err: err}
}

// summarize runs after the stages, whatever happened. A status that was
// never persisted is not reported on: nothing was decided, and the
// reconcile is retried from a fresh read. Once it was persisted, its
// Events and metrics go out, and the Reconciled condition records whether
// the outputs were carried out. An invalid spec is reported in status and
// not retried: only a spec change can fix it, and that triggers a
// reconcile anyway.
func (r *Reconciler) summarize(ctx context.Context, sp *statusPatcher, rc *reconcileContext, res ctrl.Result, err error) (ctrl.Result, error) {
	var se *stageError
	errors.As(err, &se)
	invalid := se != nil && se.reason == ReasonInvalidSpec
	if rc.persisted {
		recordStatus(rc.ro.Namespace, rc.ro.Name, &rc.prev, &rc.ro.Status)
		r.engineEvents(rc)
	}
	if !rc.persisted && !invalid {
		return res, err
	}
	cond := metav1.Condition{
		Type:               ConditionReconciled,
		Status:             metav1.ConditionTrue,
		Reason:             ReasonSucceeded,
		Message:            "status persisted, traffic plan published, replicas scaled, actions performed",
		ObservedGeneration: rc.ro.Generation,
		LastTransitionTime: metav1.NewTime(rc.now),
	}
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonStatusFailed, err.Error()
		if se != nil {
			cond.Reason = se.reason
		}
	}
	if invalid {
		r.event(rc.ro, "Warning", ReasonInvalidSpec, err.Error())
		err = nil
	}
	if meta.SetStatusCondition(&rc.ro.Status.Conditions, cond) {
		if perr := sp.patch(ctx, rc.ro); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	return res, err
}

// forget drops what is kept of a deleted Rollout.
func (r *Reconciler) forget(key types.NamespacedName) {
	forgetMetrics(key.Namespace, key.Name)
	r.reverts.forget(key)
	if r.outbox != nil {
		r.outbox.forget(key)
	}
	for _, v := range []any{r.Publisher, r.Acknowledger} {
		if f, ok := v.(interface{ Forget(types.NamespacedName) }); ok {
			f.Forget(key)
		}
	}
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) ackPoll() time.Duration {
	if r.AckPollInterval > 0 {
		return r.AckPollInterval
	}
	return DefaultAckPollInterval
}

func (r *Reconciler) history() int {
	switch {
	case r.RevisionHistory == 0:
		return workload.DefaultRevisionHistory
	case r.RevisionHistory < 0:
		return 0
	}
	return r.RevisionHistory
}

func (r *Reconciler) warn(ctx context.Context, ro *v1alpha1.Rollout, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.FromContext(ctx).Info(msg, "reason", reason)
	r.event(ro, "Warning", reason, msg)
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "success"
	case apierrors.IsConflict(err):
		return "conflict"
	}
	return "error"
}
