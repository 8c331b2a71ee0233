package xdsplane

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// Feeder serves on every replica what the leader decided: it watches
// Rollouts through the manager's cache and gives the Plane each one's
// plan as its persisted status has it (engine.PersistedPlan). It is a
// manager Runnable that needs no leadership, so followers serve xDS too
// and xDS scales with replicas; on the leader it runs beside the
// reconciler, and the Plane's resourceVersion order settles which of the
// two is newer.
//
// A status whose plan cannot be rebuilt (the spec changed since; no plan
// yet) leaves the last plan in force until the leader writes the next
// status. A deleted Rollout's plan is removed.
type Feeder struct {
	// Cache is the manager's cache (mgr.GetCache()).
	Cache cache.Cache
	Plane *Plane
	// Logger; default none.
	Logger logr.Logger
}

var _ manager.LeaderElectionRunnable = (*Feeder)(nil)

// NeedLeaderElection is false: every replica serves xDS.
func (f *Feeder) NeedLeaderElection() bool { return false }

// Start feeds the Plane until ctx ends.
func (f *Feeder) Start(ctx context.Context) error {
	if f.Cache == nil || f.Plane == nil {
		return errors.New("xDS feeder: Cache and Plane are required")
	}
	inf, err := f.Cache.GetInformer(ctx, &v1alpha1.Rollout{})
	if err != nil {
		return fmt.Errorf("xDS feeder: Rollout informer: %w", err)
	}
	// A rate-limited queue of keys: events for one Rollout collapse into
	// one entry, and a publish that fails is retried with backoff rather
	// than waiting for the Rollout's next change.
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName](),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "sluice-xds-feeder"})
	defer q.ShutDown()
	enqueue := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if ro, ok := obj.(*v1alpha1.Rollout); ok {
			q.Add(keyOf(ro))
		}
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	if err != nil {
		return fmt.Errorf("xDS feeder: Rollout event handler: %w", err)
	}
	defer func() { _ = inf.RemoveEventHandler(reg) }()
	// Every Rollout known before the first publish: a starting replica
	// publishes the whole set once rather than growing it one by one.
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil // ctx ended
	}
	go func() { <-ctx.Done(); q.ShutDown() }()
	for {
		batch, ok := take(q)
		if !ok {
			return nil
		}
		f.feed(ctx, q, batch)
	}
}

// take blocks for one key, then takes every key already queued.
func take(q workqueue.TypedRateLimitingInterface[types.NamespacedName]) ([]types.NamespacedName, bool) {
	key, shutdown := q.Get()
	if shutdown {
		return nil, false
	}
	batch := []types.NamespacedName{key}
	for q.Len() > 0 {
		key, shutdown := q.Get()
		if shutdown {
			break
		}
		batch = append(batch, key)
	}
	return batch, true
}

// feed publishes the batch's plans at once; if that fails, each on its
// own, so one bad plan holds back only itself, and retries what failed.
func (f *Feeder) feed(ctx context.Context, q workqueue.TypedRateLimitingInterface[types.NamespacedName], batch []types.NamespacedName) {
	changes := make([]change, 0, len(batch))
	for _, key := range batch {
		c, ok, err := f.changeOf(ctx, key)
		switch {
		case err != nil:
			f.settle(q, key, fmt.Errorf("read rollout: %w", err))
		case ok:
			changes = append(changes, c)
		}
	}
	err := f.Plane.update(ctx, changes...)
	for _, c := range changes {
		if err != nil && len(changes) > 1 {
			f.settle(q, c.key, f.Plane.update(ctx, c))
		} else {
			f.settle(q, c.key, err)
		}
	}
	for _, key := range batch {
		q.Done(key)
	}
}

// settle ends a key's retries, or schedules the next one.
func (f *Feeder) settle(q workqueue.TypedRateLimitingInterface[types.NamespacedName], key types.NamespacedName, err error) {
	if err == nil {
		q.Forget(key)
		return
	}
	f.Logger.Error(err, "xDS feeder: the rollout's current plan is not served; the previous one stays in force", "rollout", key.String())
	q.AddRateLimited(key)
}

// changeOf is the Plane update for one Rollout as the cache has it now;
// ok is false when there is nothing to change.
func (f *Feeder) changeOf(ctx context.Context, key types.NamespacedName) (change, bool, error) {
	ro := &v1alpha1.Rollout{}
	if err := f.Cache.Get(ctx, key, ro); err != nil {
		if apierrors.IsNotFound(err) {
			return change{key: key, forget: true}, true, nil
		}
		return change{}, false, err
	}
	if !ro.DeletionTimestamp.IsZero() {
		// Its owner references are about to take the workload away;
		// serve its last plan until the object is gone.
		return change{}, false, nil
	}
	pl, err := engine.PersistedPlan(ro)
	if err != nil {
		// No plan yet, or the spec moved on since the status was
		// written: keep what is served until the leader writes the
		// status of the new spec.
		f.Logger.V(1).Info("xDS feeder: keeping the last plan", "rollout", key.String(), "reason", err.Error())
		return change{}, false, nil
	}
	return change{key: key, plan: pl, rv: ro.ResourceVersion}, true, nil
}

// Runnable serves srv as a manager Runnable on every replica (it needs no
// leadership): on lis, or on the server's own address if lis is nil,
// until the manager stops.
func Runnable(srv *xds.Server, lis net.Listener) manager.Runnable {
	return &serverRunnable{srv: srv, lis: lis}
}

type serverRunnable struct {
	srv *xds.Server
	lis net.Listener
}

func (r *serverRunnable) Start(ctx context.Context) error {
	if r.lis == nil {
		return r.srv.ListenAndServe(ctx)
	}
	return r.srv.Serve(ctx, r.lis)
}

func (r *serverRunnable) NeedLeaderElection() bool { return false }
