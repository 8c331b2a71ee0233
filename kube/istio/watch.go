package istio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// NewCachedWriter returns a Writer that skips writes that would change
// nothing. It reads and writes through c as NewWriter's does, and uses ca
// (an informer cache narrowed by CacheByObject, such as the manager's) to
// tell, without a request, whether the objects are still as its last write
// for the Rollout left them.
//
// Skipping needs two things, and without them every Write writes: the
// Writer runs as a manager Runnable (Start), which watches the cache, and
// its Wake channel is given to the reconciler (controller.Reconciler.Wake),
// which then reconciles a Rollout whose objects someone else changed or
// deleted, so the change is corrected at once rather than at the Rollout's
// next reconcile. Only writes with an Input.Owner (the Rollout to wake) are
// skipped.
func NewCachedWriter(c Client, ca cache.Cache, log logr.Logger) *Writer {
	return &Writer{c: c, cache: ca, log: log, mem: newMemory(), wake: make(chan event.GenericEvent, 64)}
}

// NewCache is the cache a cached Writer watches its objects with, as
// CacheByObject narrows it: VirtualServices and DestinationRules labelled
// LabelRouting only, without managedFields. It is a cache of its own, not
// the manager's: the manager's cache needs every kind it is configured for
// to exist when it starts, and Istio's CRDs may be missing (or installed
// later). Nothing else may read through it. opts gives the scheme, REST mapper, HTTP client and namespaces
// (the manager's). The Writer starts it (StartsCache).
func NewCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	// Defaults, not ByObject: ByObject needs the kinds' REST mappings,
	// which the cluster has not without Istio's CRDs. The cache holds
	// nothing but these two kinds.
	opts.DefaultLabelSelector = labels.SelectorFromSet(labels.Set{LabelRouting: routingValue})
	opts.DefaultTransform = cache.TransformStripManagedFields()
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("istio object cache: %w", err)
	}
	return c, nil
}

// StartsCache makes the Writer start its cache when it starts: for a
// cache of its own (NewCache), which nothing else runs. It returns w.
func (w *Writer) StartsCache() *Writer {
	w.startCache = true
	return w
}

// CacheByObject narrows the caches of VirtualServices and DestinationRules
// to the objects the Writer wrote (LabelRouting), so the rest of the mesh's
// routing costs the controller no memory, and keeps their managedFields out
// of it: nothing reads them. Merge it into cache.Options.ByObject; nothing
// else may then read these kinds through that cache.
func CacheByObject() map[client.Object]cache.ByObject {
	sel := labels.SelectorFromSet(labels.Set{LabelRouting: routingValue})
	strip := cache.TransformStripManagedFields()
	return map[client.Object]cache.ByObject{
		&networkingv1.VirtualService{}:  {Label: sel, Transform: strip},
		&networkingv1.DestinationRule{}: {Label: sel, Transform: strip},
	}
}

var _ manager.LeaderElectionRunnable = (*Writer)(nil)

// NeedLeaderElection is true: only the leader's reconciler writes.
func (w *Writer) NeedLeaderElection() bool { return true }

// Wake sends the Rollouts whose VirtualService, preview VirtualService or
// DestinationRule changed since the Writer last wrote them: give it to
// controller.Reconciler.Wake. Once asked for, it must be consumed.
func (w *Writer) Wake() <-chan event.GenericEvent {
	w.wakeWanted.Store(true)
	return w.wake
}

// Forget drops what is remembered of a deleted Rollout.
func (w *Writer) Forget(key types.NamespacedName) {
	if w.mem != nil {
		w.mem.forget(key)
	}
}

// Start watches the cache's VirtualServices and DestinationRules until ctx
// ends; from the moment both informers have synced, Writes may be
// skipped. While the informers cannot be had (Istio's CRDs not installed
// yet), it retries, and every Write writes; it says once, at Info level,
// what the missing CRDs keep from working, and again when they arrive.
func (w *Writer) Start(ctx context.Context) error {
	if w.cache == nil {
		return errors.New("istio writer: Start needs a cache (NewCachedWriter)")
	}
	if w.startCache {
		go func() {
			if err := w.cache.Start(ctx); err != nil {
				w.log.Error(err, "Istio writer: the cache of VirtualServices and DestinationRules stopped")
			}
		}()
	}
	missing := false
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		stop, err := w.watch(ctx)
		if err == nil {
			defer stop()
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case meta.IsNoMatchError(err) && !missing:
			missing = true
			w.log.Info(CRDsMissing+"; Rollouts that route through Istio report it in their Reconciled condition until they are installed, "+
				"and Sluice looks for them again with backoff, without a restart", "retryIn", delay)
		case meta.IsNoMatchError(err):
			w.log.V(1).Info("Istio's CRDs are still not installed", "retryIn", delay)
		default:
			w.log.Error(err, "Istio writer: cannot watch VirtualServices and DestinationRules; writing on every reconcile", "retryIn", delay)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil
		}
	}
	if missing {
		w.log.Info("Istio's CRDs are installed now: watching VirtualServices and DestinationRules")
	}
	w.watching.Store(true)
	defer w.watching.Store(false)
	<-ctx.Done()
	return nil
}

// watch registers the event handlers and waits until both informers have
// delivered what they hold. stop removes the handlers.
func (w *Writer) watch(ctx context.Context) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	var synced []toolscache.InformerSynced
	for _, obj := range []client.Object{&networkingv1.VirtualService{}, &networkingv1.DestinationRule{}} {
		kind := kindOf(obj)
		inf, err := w.cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s informer: %w", kind, err)
		}
		reg, err := inf.AddEventHandler(w.handler(ctx, kind))
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s event handler: %w", kind, err)
		}
		stops = append(stops, func() { _ = inf.RemoveEventHandler(reg) })
		synced = append(synced, reg.HasSynced)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		stop()
		return nil, ctx.Err()
	}
	return stop, nil
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*networkingv1.DestinationRule); ok {
		return destinationRuleType.Kind
	}
	return virtualServiceType.Kind
}

// handler wakes the Rollout whose object changed or went away since its
// last write. The echoes of Sluice's own writes carry the resourceVersion
// that write recorded and wake nothing.
func (w *Writer) handler(ctx context.Context, kind string) toolscache.ResourceEventHandler {
	on := func(obj any, gone bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj, gone = d.Obj, true
		}
		o, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		rv := o.GetResourceVersion()
		if gone {
			rv = ""
		}
		if key, changed := w.mem.observe(objectRef{kind: kind, namespace: o.GetNamespace(), name: o.GetName()}, rv); changed {
			w.wakeUp(ctx, key)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { on(obj, false) },
		UpdateFunc: func(_, obj any) { on(obj, false) },
		DeleteFunc: func(obj any) { on(obj, true) },
	}
}

// wakeUp asks the reconciler to reconcile the Rollout key, waiting for room
// in the channel.
func (w *Writer) wakeUp(ctx context.Context, key types.NamespacedName) {
	if !w.wakeWanted.Load() {
		return
	}
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case w.wake <- event.GenericEvent{Object: ro}:
	case <-ctx.Done():
	}
}

// memoryKey tells whether w may skip and remember writes of in, and under
// which key: a cached Writer that watches its cache and is listened to,
// writing for a Rollout.
func (w *Writer) memoryKey(in Input) (key types.NamespacedName, inputs string, ok bool) {
	if w.mem == nil || in.Owner == nil || !w.watching.Load() || !w.wakeWanted.Load() {
		return key, "", false
	}
	inputs, err := fingerprint(in)
	if err != nil {
		return key, "", false // the write renders nothing and says why
	}
	return types.NamespacedName{Namespace: in.Plan.Namespace, Name: in.Owner.Name}, inputs, true
}

// unchanged returns the last write of key if it had these inputs and the
// cache holds its objects at the resourceVersions it left them at. A cache
// behind the API server only costs a write that changes nothing; a change
// the cache has not seen yet is corrected when its event wakes the Rollout.
func (w *Writer) unchanged(ctx context.Context, key types.NamespacedName, inputs string) (Written, bool) {
	rv, out, ok := w.mem.lookup(key, inputs)
	if !ok {
		return Written{}, false
	}
	for ref, want := range rv {
		got, err := w.cachedVersion(ctx, ref)
		if err != nil || got != want {
			return Written{}, false
		}
	}
	return out, true
}

// cachedVersion is ref's resourceVersion in the cache, "" when absent.
func (w *Writer) cachedVersion(ctx context.Context, ref objectRef) (string, error) {
	var obj client.Object = &networkingv1.VirtualService{}
	if ref.kind == destinationRuleType.Kind {
		obj = &networkingv1.DestinationRule{}
	}
	err := w.cache.Get(ctx, client.ObjectKey{Namespace: ref.namespace, Name: ref.name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading %s %s/%s from the cache: %w", ref.kind, ref.namespace, ref.name, err)
	}
	return obj.GetResourceVersion(), nil
}
