package controller

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// world is the cluster around the controller in the benchmark: its own
// informer cache of the namespace, as the kube-controller-manager has,
// and a stand-in for the ReplicaSet controller and the kubelet that makes
// a ReplicaSet's replicas available a moment after each change, driven by
// watch events. Polling instead (listing every ReplicaSet and Rollout a few
// times a second) loads the shared API server with work no real cluster
// does: at 1,000 Rollouts, several MB of JSON per poll.
type world struct {
	c     client.Client
	cache cache.Cache
	ns    string
}

// startWorld starts the world's cache for namespace ns and the kubelet
// stand-in, until ctx ends.
func startWorld(ctx context.Context, b *testing.B, cfg *rest.Config, c client.Client, ns string) *world {
	b.Helper()
	ca, err := cache.New(cfg, cache.Options{
		Scheme:            c.Scheme(),
		DefaultNamespaces: map[string]cache.Config{ns: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
	})
	if err != nil {
		b.Fatal(err)
	}
	w := &world{c: c, cache: ca, ns: ns}
	w.runKubelet(ctx, b, 100*time.Millisecond)
	if _, err := ca.GetInformer(ctx, &v1alpha1.Rollout{}); err != nil {
		b.Fatal(err)
	}
	go func() {
		if err := ca.Start(ctx); err != nil {
			b.Errorf("benchmark cache: %v", err)
		}
	}()
	if !ca.WaitForCacheSync(ctx) {
		b.Fatal("benchmark cache did not sync")
	}
	return w
}

// runKubelet marks each ReplicaSet whose replicas are not all available
// as available delay after the event that shows it, with a few workers.
func (w *world) runKubelet(ctx context.Context, b *testing.B, delay time.Duration) {
	b.Helper()
	q := workqueue.NewTypedDelayingQueue[types.NamespacedName]()
	inf, err := w.cache.GetInformer(ctx, &appsv1.ReplicaSet{})
	if err != nil {
		b.Fatal(err)
	}
	enqueue := func(obj any) {
		if rs, ok := obj.(*appsv1.ReplicaSet); ok && !allAvailable(rs) {
			q.AddAfter(client.ObjectKeyFromObject(rs), delay)
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	if err != nil {
		b.Fatal(err)
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
}

func (w *world) markAvailable(ctx context.Context, key types.NamespacedName) error {
	rs := &appsv1.ReplicaSet{}
	if err := w.cache.Get(ctx, key, rs); err != nil {
		return client.IgnoreNotFound(err)
	}
	if allAvailable(rs) {
		return nil
	}
	n := *rs.Spec.Replicas
	rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n, n
	rs.Status.ObservedGeneration = rs.Generation
	err := w.c.Status().Update(ctx, rs)
	if apierrors.IsNotFound(err) || ctx.Err() != nil {
		return nil
	}
	return err
}

func allAvailable(rs *appsv1.ReplicaSet) bool {
	n := *rs.Spec.Replicas
	return rs.Status.AvailableReplicas == n && rs.Status.Replicas == n
}

// waitAll waits until done holds for n Rollouts of the namespace, as the
// world's cache sees them.
func (w *world) waitAll(b *testing.B, n int, done func(*v1alpha1.Rollout) bool) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var list v1alpha1.RolloutList
		// Read-only: the cache's own objects, not copies.
		if err := w.cache.List(context.Background(), &list, client.InNamespace(w.ns), client.UnsafeDisableDeepCopy); err != nil {
			b.Fatal(err)
		}
		ok := 0
		var late *v1alpha1.Rollout
		for i := range list.Items {
			if done(&list.Items[i]) {
				ok++
			} else {
				late = &list.Items[i]
			}
		}
		if ok == n {
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%d of %d Rollouts done after 10 minutes", ok, n)
			if late != nil {
				msg += fmt.Sprintf("; %s: phase %s, step %s: %s", late.Name, late.Status.Phase, late.Status.StepDisplay, late.Status.Message)
			}
			b.Fatal(msg)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func pauseFor(d time.Duration) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{Duration: &metav1.Duration{Duration: d}}}
}

// parallel calls do for every name, 16 at a time, and fails on the first
// error.
func parallel(b *testing.B, names []string, do func(string) error) {
	b.Helper()
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for name := range work {
				if err := do(name); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// rssMB is the peak resident memory of this process (controller, clients
// and the benchmark's own world; the API server and etcd run apart).
func rssMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Logf("no RSS: %v", err)
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err == nil {
				return float64(kb) / 1024
			}
		}
	}
	return 0
}
