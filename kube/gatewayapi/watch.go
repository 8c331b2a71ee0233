package gatewayapi

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// NewCache is the cache a cached Writer watches its routes with: routes
// labelled LabelRouting only, without managedFields. It is a cache of its
// own, not the manager's: the manager's cache needs every kind it is
// configured for to exist when it starts, and the Gateway API CRDs may be
// missing (or installed later). opts gives the scheme, REST mapper, HTTP
// client and namespaces (the manager's).
func NewCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	opts.DefaultLabelSelector = labels.SelectorFromSet(labels.Set{LabelRouting: routingValue})
	opts.DefaultTransform = cache.TransformStripManagedFields()
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("gateway API route cache: %w", err)
	}
	return c, nil
}

// NewCachedWriter returns a Writer that skips writes that would change
// nothing, and wakes a Rollout when one of its routes changes: someone
// else's edit (drift, corrected by the next write) or a gateway writing
// its status (the acknowledgement). ca is a NewCache; the Writer starts it
// when it runs as a manager Runnable (leader only), and watches a route
// kind from the first write of that kind on, so a cluster without the
// Gateway API CRDs costs nothing until a Rollout names a route. Skipping
// needs the Wake channel given to the reconciler
// (controller.Reconciler.Wake).
func NewCachedWriter(c Client, ca cache.Cache, log logr.Logger) *Writer {
	return &Writer{
		c: c, log: log, cache: ca,
		watches: map[Kind]watchState{},
		mem:     newMemory(),
		wake:    make(chan event.GenericEvent, 64),
	}
}

var _ manager.LeaderElectionRunnable = (*Writer)(nil)

// NeedLeaderElection is true: only the leader's reconciler writes.
func (w *Writer) NeedLeaderElection() bool { return true }

// Start runs the Writer's cache until ctx ends.
func (w *Writer) Start(ctx context.Context) error {
	if w.cache == nil {
		return errors.New("gateway API writer: Start needs a cache (NewCachedWriter)")
	}
	w.base.Store(&ctx)
	if err := w.cache.Start(ctx); err != nil {
		return fmt.Errorf("gateway API route cache: %w", err)
	}
	return nil
}

// Wake sends the Rollouts whose routes changed since the Writer last
// wrote or read them: give it to controller.Reconciler.Wake. Once asked
// for, it must be consumed.
func (w *Writer) Wake() <-chan event.GenericEvent {
	w.wakeWanted.Store(true)
	return w.wake
}

// Forget drops what is remembered of a deleted Rollout.
func (w *Writer) Forget(key types.NamespacedName) { w.mem.forget(key) }

type watchState int

const (
	watchNone watchState = iota
	watchStarting
	watchOn
)

func (w *Writer) watched(kind Kind) bool {
	if w.cache == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watches[kind] == watchOn
}

// ensureWatch starts watching kind in the background once the Writer
// runs; until the informer has synced, writes of kind are not skipped and
// reads go to the API server. A failed start is tried again at the next
// write.
func (w *Writer) ensureWatch(kind Kind) {
	base := w.base.Load()
	if w.cache == nil || base == nil {
		return
	}
	w.mu.Lock()
	if w.watches[kind] != watchNone {
		w.mu.Unlock()
		return
	}
	w.watches[kind] = watchStarting
	w.mu.Unlock()
	go func() {
		err := w.watch(*base, kind)
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			w.watches[kind] = watchNone
			w.log.Error(err, "cannot watch routes; writing on every reconcile", "kind", kind)
			return
		}
		w.watches[kind] = watchOn
	}()
}

// watch registers the event handler and waits until the informer has
// delivered what it holds.
func (w *Writer) watch(ctx context.Context, kind Kind) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kind.GroupVersionKind())
	inf, err := w.cache.GetInformer(ctx, u, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("%s informer: %w", kind, err)
	}
	reg, err := inf.AddEventHandler(w.handler(ctx, kind))
	if err != nil {
		return fmt.Errorf("%s event handler: %w", kind, err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		_ = inf.RemoveEventHandler(reg)
		return ctx.Err()
	}
	return nil
}

// handler wakes the Rollouts that wrote a route that changed or went away
// since. The echo of Sluice's own write carries the resourceVersion that
// write recorded and wakes nothing.
func (w *Writer) handler(ctx context.Context, kind Kind) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.routeChanged(ctx, kind, obj, false) },
		UpdateFunc: func(_, obj any) { w.routeChanged(ctx, kind, obj, false) },
		DeleteFunc: func(obj any) { w.routeChanged(ctx, kind, obj, true) },
	}
}

// routeChanged sends every Rollout that last left the route at another
// resourceVersion to the reconciler, waiting for room in the channel.
func (w *Writer) routeChanged(ctx context.Context, kind Kind, obj any, deleted bool) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = tomb.Obj, true
	}
	o, ok := obj.(metav1.Object)
	if !ok || !w.wakeWanted.Load() {
		return
	}
	var rv string // a deleted route has none
	if !deleted {
		rv = o.GetResourceVersion()
	}
	for _, key := range w.mem.changed(routeRef{kind: kind, namespace: o.GetNamespace(), name: o.GetName()}, rv) {
		ev := event.GenericEvent{Object: &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}
		select {
		case w.wake <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// routeRef names one route.
type routeRef struct {
	kind            Kind
	namespace, name string
}

// memory is what a cached Writer remembers of its last write of each
// route for each Rollout. It is per process: after a restart (or on a new
// leader) the first write of each route reads it, and the following ones
// are skipped.
type memory struct {
	mu   sync.Mutex
	last map[types.NamespacedName]map[routeRef]remembered
}

type remembered struct {
	inputs string
	out    Written
}

func newMemory() *memory {
	return &memory{last: map[types.NamespacedName]map[routeRef]remembered{}}
}

func (m *memory) lookup(key types.NamespacedName, ref routeRef, inputs string) (Written, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.last[key][ref]
	return r.out, ok && r.inputs == inputs
}

func (m *memory) remember(key types.NamespacedName, ref routeRef, inputs string, out Written) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last[key] == nil {
		m.last[key] = map[routeRef]remembered{}
	}
	m.last[key][ref] = remembered{inputs: inputs, out: out}
}

// changed lists the Rollouts that last left ref at another
// resourceVersion than rv.
func (m *memory) changed(ref routeRef, rv string) []types.NamespacedName {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []types.NamespacedName
	for key, routes := range m.last {
		if r, ok := routes[ref]; ok && r.out.ResourceVersion != rv {
			out = append(out, key)
		}
	}
	return out
}

// forget drops key's writes; a Writer without a cache has no memory.
func (m *memory) forget(key types.NamespacedName) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.last, key)
}
