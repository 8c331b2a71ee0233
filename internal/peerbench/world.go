package peerbench

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// World is the cluster around a controller under measurement, the same
// for every product: an informer cache of one namespace, as the
// kube-controller-manager has, and a stand-in for the ReplicaSet
// controller and the kubelet that makes a ReplicaSet's replicas available
// a moment after each change that asks for them, driven by watch events.
// It is kube/controller's benchmark world (BenchmarkThousandRollouts),
// made independent of which controller owns the ReplicaSets.
type World struct {
	C     client.Client // without a client-side rate limit
	Cache cache.Cache
	NS    string

	mu        sync.Mutex
	available int // status updates the kubelet stand-in made
}

// StartWorld starts the world's cache for namespace ns, watching the
// ReplicaSets and the objects watch lists (the Rollouts of the product),
// and the kubelet stand-in, until ctx ends. The cache strips managedFields.
func StartWorld(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, ns string, delay time.Duration, watch ...client.Object) (*World, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = -1
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	ca, err := cache.New(cfg, cache.Options{
		Scheme:            scheme,
		DefaultNamespaces: map[string]cache.Config{ns: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, err
	}
	w := &World{C: c, Cache: ca, NS: ns}
	if err := w.runKubelet(ctx, delay); err != nil {
		return nil, err
	}
	for _, obj := range watch {
		if _, err := ca.GetInformer(ctx, obj); err != nil {
			return nil, err
		}
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("world cache of %s did not sync", ns)
	}
	return w, nil
}

// runKubelet marks each ReplicaSet whose replicas are not all available
// as available delay after the event that shows it, with a few workers.
func (w *World) runKubelet(ctx context.Context, delay time.Duration) error {
	q := workqueue.NewTypedDelayingQueue[types.NamespacedName]()
	inf, err := w.Cache.GetInformer(ctx, &appsv1.ReplicaSet{})
	if err != nil {
		return err
	}
	enqueue := func(obj any) {
		if rs, ok := obj.(*appsv1.ReplicaSet); ok && !AllAvailable(rs) {
			q.AddAfter(client.ObjectKeyFromObject(rs), delay)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	for range 4 {
		go func() {
			for {
				key, quit := q.Get()
				if quit {
					return
				}
				if err := w.markAvailable(ctx, key); err != nil {
					// A conflict or a stale cache: the newer version's
					// event enqueues it again; retry anyway.
					q.AddAfter(key, delay)
				}
				q.Done(key)
			}
		}()
	}
	return nil
}

func (w *World) markAvailable(ctx context.Context, key types.NamespacedName) error {
	rs := &appsv1.ReplicaSet{}
	if err := w.Cache.Get(ctx, key, rs); err != nil {
		return client.IgnoreNotFound(err)
	}
	if AllAvailable(rs) {
		return nil
	}
	n := replicas(rs)
	rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n, n
	rs.Status.FullyLabeledReplicas = n
	rs.Status.ObservedGeneration = rs.Generation
	err := w.C.Status().Update(ctx, rs)
	if apierrors.IsNotFound(err) || ctx.Err() != nil {
		return nil
	}
	if err == nil {
		w.mu.Lock()
		w.available++
		w.mu.Unlock()
	}
	return err
}

// AllAvailable reports whether every replica rs asks for is available and
// its status is of its latest generation.
func AllAvailable(rs *appsv1.ReplicaSet) bool {
	n := replicas(rs)
	return rs.Status.AvailableReplicas == n && rs.Status.Replicas == n && rs.Status.ReadyReplicas == n &&
		rs.Status.ObservedGeneration >= rs.Generation
}

func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

// WaitAll polls the world's cache every 250 ms until done says true for
// all n objects of list's kind in the namespace, or timeout passes. done
// gets the cache's own objects (not copies: read only) and the namespace's
// ReplicaSets by the value of label key (the app label), so that it can
// check what was scaled down.
func (w *World) WaitAll(ctx context.Context, n int, timeout time.Duration, list client.ObjectList, label string,
	done func(obj client.Object, rs []*appsv1.ReplicaSet) (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := w.Cache.List(ctx, list, client.InNamespace(w.NS), client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
		var rsList appsv1.ReplicaSetList
		if err := w.Cache.List(ctx, &rsList, client.InNamespace(w.NS), client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
		byApp := map[string][]*appsv1.ReplicaSet{}
		for i := range rsList.Items {
			rs := &rsList.Items[i]
			byApp[rs.Labels[label]] = append(byApp[rs.Labels[label]], rs)
		}
		ok, late := 0, ""
		objs, err := objectsOf(list)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if d, why := done(obj, byApp[obj.GetName()]); d {
				ok++
			} else if late == "" {
				late = obj.GetName() + ": " + why
			}
		}
		if ok == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d done after %s; %s", ok, n, timeout, late)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// objectsOf lists the items of list.
func objectsOf(list client.ObjectList) ([]client.Object, error) {
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(items))
	for _, it := range items {
		obj, ok := it.(client.Object)
		if !ok {
			return nil, fmt.Errorf("list item %T is not an object", it)
		}
		out = append(out, obj)
	}
	return out, nil
}
