package controller

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/sluicehq/sluice/kube/workload"
)

// How a reconcile finds the objects its Rollout owns, and which of their
// watch events are worth a reconcile. Both matter at scale: with N
// Rollouts in a namespace, listing the namespace's ReplicaSets and
// filtering by owner deep-copies 2N objects per reconcile (the top of the
// CPU profile of BenchmarkThousandRollouts before the index), and each
// write the reconciler makes to an owned object comes back as an event
// that would start another reconcile to look at what it just did.

// indexController is the cache index of owned objects by the UID of their
// controlling Rollout.
const indexController = ".metadata.controller.rollout.uid"

// controllerUID is the indexController value of obj.
func controllerUID(obj client.Object) []string {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != workload.RolloutKind.Kind || ref.APIVersion != workload.RolloutKind.GroupVersion().String() {
		return nil
	}
	return []string{string(ref.UID)}
}

// indexOwned registers indexController for each kind of owned object in
// the manager's cache.
func indexOwned(mgr ctrl.Manager, objs ...client.Object) error {
	for _, obj := range objs {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), obj, indexController, controllerUID); err != nil {
			return fmt.Errorf("index %T by controller: %w", obj, err)
		}
	}
	return nil
}

// ownedBy narrows a List of owned objects to those ro controls when the
// client reads from a cache with indexController. Without one (a client of
// the API server, as in the harness tests) it narrows nothing and the
// caller filters by owner reference itself, as it does anyway.
func (r *Reconciler) ownedBy(ro client.Object) []client.ListOption {
	opts := []client.ListOption{client.InNamespace(ro.GetNamespace())}
	if r.indexed {
		opts = append(opts, client.MatchingFields{indexController: string(ro.GetUID())})
	}
	return opts
}

// createOwned creates an object the Rollout will own, so that its create
// event is known for the echo of this write.
func (r *Reconciler) createOwned(ctx context.Context, obj client.Object) error {
	r.writes.expect(obj, 1)
	err := r.Create(ctx, obj)
	if err != nil {
		r.writes.failed(obj)
	}
	return err
}

// patchOwnedSpec merge-patches the spec of an owned object from base (as
// read from the cache), so that its update event is known for the echo of
// this write.
func (r *Reconciler) patchOwnedSpec(ctx context.Context, obj, base client.Object) error {
	r.writes.expect(obj, base.GetGeneration()+1)
	err := r.Patch(ctx, obj, client.MergeFrom(base))
	if err != nil {
		r.writes.failed(obj)
	}
	return err
}

// ownWrites remembers the generation each of the reconciler's writes to
// the spec of an owned object (creating a ReplicaSet or AnalysisRun,
// scaling a ReplicaSet, terminating a run) will give that object. The
// watch event reporting that generation tells nothing the reconcile that
// wrote it did not already know, so it needs no reconcile of its own.
// Every change the reconciler waits for is someone else's status write
// (the ReplicaSet controller's availability, the analysis controller's
// results), which leaves the generation alone and always passes, as does
// any spec change of a generation the reconciler did not write.
//
// The generation is noted before the write is sent: the event may well
// arrive before the write's response. It is predicted from the object the
// write was computed from (generation+1; 1 for a create), so a write based
// on a stale cache predicts a generation that either has come and gone or
// is not the one the write produces; either way the echo passes and costs
// one reconcile, never a missed one.
type ownWrites struct {
	mu   sync.Mutex
	next map[ownedKey]int64
}

// ownedKey names an owned object by type as well as name: a ReplicaSet and
// an AnalysisRun may share a name, and one's expectation must never drop
// the other's event.
type ownedKey struct {
	typ reflect.Type
	types.NamespacedName
}

func keyOfOwned(obj client.Object) ownedKey {
	return ownedKey{reflect.TypeOf(obj), client.ObjectKeyFromObject(obj)}
}

func newOwnWrites() *ownWrites { return &ownWrites{next: map[ownedKey]int64{}} }

// expect notes that a write about to be sent will give obj generation g.
// A nil receiver (a Reconciler not set up with a manager, whose client
// has no watches) notes nothing, as do its other methods.
func (w *ownWrites) expect(obj client.Object, g int64) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.next[keyOfOwned(obj)] = g
	w.mu.Unlock()
}

// failed drops the expectation of a write that was not made.
func (w *ownWrites) failed(obj client.Object) {
	if w == nil {
		return
	}
	w.forget(keyOfOwned(obj))
}

// echo reports whether obj is at the generation the reconciler's own
// write gave it, and if so forgets the write.
func (w *ownWrites) echo(obj client.Object) bool {
	key := keyOfOwned(obj)
	w.mu.Lock()
	defer w.mu.Unlock()
	g, ok := w.next[key]
	if !ok || g != obj.GetGeneration() {
		return false
	}
	delete(w.next, key)
	return true
}

func (w *ownWrites) forget(key ownedKey) {
	w.mu.Lock()
	delete(w.next, key)
	w.mu.Unlock()
}

// predicate drops the echoes of the reconciler's own spec writes.
// Deletions always pass and end what is remembered of the object.
func (w *ownWrites) predicate() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !w.echo(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetGeneration() == e.ObjectNew.GetGeneration() || !w.echo(e.ObjectNew)
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.forget(keyOfOwned(e.Object))
			return true
		},
	}
}
