package controller

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The echo of the reconciler's own spec write is dropped whether it
// arrives before or after the write's response; status writes, spec
// changes of a generation the reconciler did not write, and deletions pass.
func TestOwnWritesDropOnlyEchoes(t *testing.T) {
	t.Parallel()
	rs := func(gen int64) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-abc", Generation: gen}}
	}
	// A step is one of: the reconciler expects a write to give generation
	// expect; a write failed; an event arrives (create when old is 0,
	// delete when del) and passes or not.
	type step struct {
		expect   int64
		failed   bool
		old, new int64
		del      bool
		pass     bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"own create", []step{{expect: 1}, {new: 1}}},
		{"create by someone else", []step{{new: 1, pass: true}}},
		{"own scale", []step{{expect: 3}, {old: 2, new: 3}}},
		{"echo before the response, then the status write", []step{
			{expect: 2}, {old: 1, new: 2}, {old: 2, new: 2, pass: true}}},
		{"status write while the own write is in flight", []step{
			{expect: 2}, {old: 1, new: 1, pass: true}, {old: 1, new: 2}}},
		{"an echo is dropped once", []step{{expect: 2}, {old: 1, new: 2}, {old: 2, new: 2, pass: true}, {old: 1, new: 2, pass: true}}},
		{"someone else's scale", []step{{old: 3, new: 4, pass: true}}},
		{"stale prediction", []step{{expect: 3}, {old: 3, new: 4, pass: true}}},
		{"failed write", []step{{expect: 2}, {failed: true}, {old: 1, new: 2, pass: true}}},
		{"later writes replace earlier ones", []step{{expect: 2}, {expect: 3}, {old: 1, new: 2, pass: true}, {old: 2, new: 3}}},
		{"deletion passes and forgets", []step{{expect: 2}, {old: 1, del: true, pass: true}, {new: 2, pass: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newOwnWrites()
			p := w.predicate()
			for i, s := range tc.steps {
				var got bool
				switch {
				case s.expect != 0:
					w.expect(rs(0), s.expect)
					continue
				case s.failed:
					w.failed(rs(0))
					continue
				case s.del:
					got = p.Delete(event.DeleteEvent{Object: rs(s.old)})
				case s.old == 0:
					got = p.Create(event.CreateEvent{Object: rs(s.new)})
				default:
					got = p.Update(event.UpdateEvent{ObjectOld: rs(s.old), ObjectNew: rs(s.new)})
				}
				if got != s.pass {
					t.Fatalf("step %d (%+v): pass %v, want %v", i, s, got, s.pass)
				}
			}
		})
	}
}

// A ReplicaSet and an AnalysisRun may share a name: the expectation of a
// write to one never drops an event of the other.
func TestOwnWritesKeepKindsApart(t *testing.T) {
	t.Parallel()
	meta := metav1.ObjectMeta{Namespace: "shop", Name: "checkout-abc", Generation: 1}
	w := newOwnWrites()
	p := w.predicate()
	w.expect(&appsv1.ReplicaSet{ObjectMeta: meta}, 1)
	if !p.Create(event.CreateEvent{Object: &v1alpha1.AnalysisRun{ObjectMeta: meta}}) {
		t.Fatal("the AnalysisRun's create was dropped as the echo of a ReplicaSet write")
	}
	if p.Create(event.CreateEvent{Object: &appsv1.ReplicaSet{ObjectMeta: meta}}) {
		t.Fatal("the ReplicaSet's own create was not dropped")
	}
}

// Objects are indexed by the Rollout that controls them, and by nothing
// else: not by an owner that is not their controller, nor by a controller
// of another kind.
func TestControllerUID(t *testing.T) {
	t.Parallel()
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "checkout", UID: "ro-uid"}}
	other := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "checkout", UID: "dep-uid", Controller: ptr.To(true)}
	owner := *metav1.NewControllerRef(ro, workload.RolloutKind)
	owner.Controller = ptr.To(false)
	tests := []struct {
		name string
		refs []metav1.OwnerReference
		want []string
	}{
		{"controlled", []metav1.OwnerReference{*metav1.NewControllerRef(ro, workload.RolloutKind)}, []string{"ro-uid"}},
		{"owned, not controlled", []metav1.OwnerReference{owner}, nil},
		{"another kind", []metav1.OwnerReference{other}, nil},
		{"none", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := controllerUID(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tc.refs}})
			if len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
				t.Fatalf("controllerUID = %v, want %v", got, tc.want)
			}
		})
	}
}

// Someone scaling a Rollout's ReplicaSet by hand is undone: the echo
// filter lets a spec change it did not write through (nothing else
// happens meanwhile to start a reconcile), and the reconcile
// finds the Rollout's ReplicaSets through the owner index among another
// Rollout's in the same namespace, whose ReplicaSet it leaves alone.
func TestReplicaSetScaledByHandIsScaledBack(t *testing.T) {
	c := cluster(t)
	ns := newNamespace(t, c)
	ctx := context.Background()
	runManager(t, newFakePlane(), &events{})
	for _, name := range []string{"checkout", "cart"} {
		if err := c.Create(ctx, newRollout(ns, name, name+":v1")); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) *v1alpha1.Rollout {
		ro := &v1alpha1.Rollout{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ro); err != nil {
			t.Fatal(err)
		}
		return ro
	}
	eventually(t, c, ns, "both healthy", func() bool { return healthy(get("checkout")) && healthy(get("cart")) })
	replicaSet := func(name string) *appsv1.ReplicaSet {
		rs := &appsv1.ReplicaSet{}
		key := types.NamespacedName{Namespace: ns, Name: workload.Name(name, get(name).Status.StableRevision)}
		if err := c.Get(ctx, key, rs); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	rs := replicaSet("checkout")
	scaled := rs.DeepCopy()
	scaled.Spec.Replicas = ptr.To[int32](1)
	if err := c.Patch(ctx, scaled, client.MergeFrom(rs)); err != nil {
		t.Fatal(err)
	}
	// No kubelet from here on: the hand-made spec change is the only
	// event there is to reconcile on.
	deadline := time.Now().Add(30 * time.Second)
	for *replicaSet("checkout").Spec.Replicas != 3 {
		if time.Now().After(deadline) {
			t.Fatal("checkout's ReplicaSet still at 1 replica after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cart := replicaSet("cart"); *cart.Spec.Replicas != 3 || cart.Generation != 1 {
		t.Fatalf("cart's ReplicaSet: %d replicas, generation %d; want 3, untouched", *cart.Spec.Replicas, cart.Generation)
	}
}
