package controller

import (
	"context"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
)

func (h *harness) service(rev string) *corev1.Service {
	h.t.Helper()
	svc := &corev1.Service{}
	key := types.NamespacedName{Namespace: h.key.Namespace, Name: workload.ServiceName("checkout", rev)}
	if err := h.c.Get(context.Background(), key, svc); err != nil {
		h.t.Fatalf("Service of revision %s: %v", rev, err)
	}
	return svc
}

// Every running revision gets the headless Service whose EndpointSlices
// the xDS server reads, owned by the revision's ReplicaSet; a hand edit
// of what Sluice decides is put back.
func TestRevisionsGetHeadlessServices(t *testing.T) {
	h := newHarness(t, setWeight(10), pauseUntilPromoted())
	h.drive("healthy on v1", healthy)
	v1 := h.ro.Status.StableRevision
	v2 := h.setImage("checkout:v2")
	h.mustReconcile()
	for _, rev := range []string{v1, v2} {
		svc, rs := h.service(rev), h.replicaSet(rev)
		if ref := metav1.GetControllerOf(svc); ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" {
			t.Errorf("Service of %s: controller %+v, want ReplicaSet %s", rev, ref, rs.Name)
		}
		if !maps.Equal(svc.Spec.Selector, rs.Spec.Selector.MatchLabels) {
			t.Errorf("Service of %s selects %v, want the ReplicaSet's pods %v", rev, svc.Spec.Selector, rs.Spec.Selector.MatchLabels)
		}
		if svc.Labels[workload.LabelService] != "checkout" || svc.Labels[workload.LabelRevision] != rev ||
			svc.Labels[workload.LabelManagedBy] != workload.ManagedBy {
			t.Errorf("Service of %s labels %v", rev, svc.Labels)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
			t.Errorf("Service of %s: clusterIP %q ports %+v, want headless on 8080", rev, svc.Spec.ClusterIP, svc.Spec.Ports)
		}
	}

	svc := h.service(v2)
	svc.Spec.Selector = map[string]string{"app": "someone-else"}
	if err := h.c.Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	if got, want := h.service(v2).Spec.Selector, h.replicaSet(v2).Spec.Selector.MatchLabels; !maps.Equal(got, want) {
		t.Errorf("after a hand edit: selector %v, want %v back", got, want)
	}
}

// A Service of the same name that is not the revision's is never taken
// over: the scale stage fails and says why.
func TestForeignServiceIsNotTakenOver(t *testing.T) {
	h := newHarness(t, setWeight(10))
	h.refresh()
	rev, err := engine.DesiredRevision(&h.ro.Spec)
	if err != nil {
		t.Fatal(err)
	}
	foreign := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.key.Namespace, Name: workload.ServiceName("checkout", rev)},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "legacy"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := h.c.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "not controlled by ReplicaSet") {
		t.Fatalf("reconcile: %v, want the foreign Service reported", err)
	}
	if c := meta.FindStatusCondition(h.ro.Status.Conditions, ConditionReconciled); c == nil || c.Reason != ReasonScaleFailed {
		t.Errorf("Reconciled condition %+v, want ScaleFailed", c)
	}
	got := h.service(rev)
	if metav1.GetControllerOf(got) != nil || got.Spec.Selector["app"] != "legacy" {
		t.Errorf("the foreign Service was changed: owner %+v selector %v", metav1.GetControllerOf(got), got.Spec.Selector)
	}
}

// A revision's ReplicaSet deleted and made again (an extra revision run
// again by a retry, a revision beyond the history that a revert brings
// back) finds the Service of its predecessor before the garbage collector
// (which envtest does not run) removes it, and adopts it; a Service of
// another ReplicaSet's is still refused.
func TestServiceOfAnEarlierReplicaSetIsAdopted(t *testing.T) {
	h := newHarness(t, setWeight(10), pauseUntilPromoted())
	h.drive("healthy on v1", healthy)
	v2 := h.setImage("checkout:v2")
	h.mustReconcile()
	old := h.replicaSet(v2)
	if err := h.c.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	rs := h.replicaSet(v2)
	if rs.UID == old.UID {
		t.Fatal("the ReplicaSet was not made again")
	}
	if ref := metav1.GetControllerOf(h.service(v2)); ref == nil || ref.UID != rs.UID {
		t.Fatalf("Service of %s: controller %+v, want the new ReplicaSet %s", v2, ref, rs.UID)
	}

	svc := h.service(v2)
	svc.OwnerReferences[0].Name, svc.OwnerReferences[0].UID = "someone-else", "0000"
	if err := h.c.Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "not controlled by ReplicaSet") {
		t.Fatalf("reconcile: %v, want the Service of another ReplicaSet refused", err)
	}
}
