package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// replicasCheckout is checkout with the replicas router (no router): ten
// replicas, 10% and 50% with a manual gate after each.
func replicasCheckout(ns string) *v1alpha1.Rollout {
	ro := newRollout(ns, "checkout", "checkout:v1", setWeight(10), pauseUntilPromoted(), setWeight(50), pauseUntilPromoted())
	ro.Spec.Replicas = ptr.To[int32](10)
	ro.Spec.Service.Routers = []v1alpha1.Router{{Replicas: &v1alpha1.ReplicasRouter{}}}
	return ro
}

// userService is the Service the user keeps for checkout, as they had it
// before Sluice: it selects app=checkout.
func (h *harness) userService() *corev1.Service {
	h.t.Helper()
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = h.key.Namespace, "checkout"
	svc.Spec.Selector = map[string]string{"app": "checkout"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}
	if err := h.c.Create(context.Background(), svc); err != nil {
		h.t.Fatal(err)
	}
	return svc
}

// wantSplit checks status.traffic.replicas and the canary weight status
// shows (the achieved one).
func (h *harness) wantSplit(weight, achieved, canary, stable int32) {
	h.t.Helper()
	tr := h.ro.Status.Traffic
	want := v1alpha1.ReplicaSplitStatus{Weight: weight, AchievedWeight: achieved, Canary: canary, Stable: stable}
	if tr.Replicas == nil || *tr.Replicas != want || tr.CanaryWeight != achieved {
		h.t.Fatalf("status.traffic: replicas %+v, canary weight %d; want %+v", tr.Replicas, tr.CanaryWeight, want)
	}
}

// noIstioObjects fails if anything wrote a VirtualService or
// DestinationRule in the test's namespace.
func (h *harness) noIstioObjects() {
	h.t.Helper()
	ctx := context.Background()
	var vss networkingv1.VirtualServiceList
	var drs networkingv1.DestinationRuleList
	for _, l := range []client.ObjectList{&vss, &drs} {
		if err := h.c.List(ctx, l, client.InNamespace(h.key.Namespace)); err != nil {
			h.t.Fatal(err)
		}
	}
	if len(vss.Items)+len(drs.Items) > 0 {
		h.t.Fatalf("the replicas router wrote Istio objects: %d VirtualServices, %d DestinationRules", len(vss.Items), len(drs.Items))
	}
}

// TestReplicasRouterCanary: with no router, the canary's share of ten pods
// behind the user's one Service follows the steps. ReplicaSets are sized
// canary first, stable second at 10% and 50%; an abort puts stable back to
// ten and the canary to none; a retry promoted in full scales the canary
// to ten and keeps the old pods for the scale-down delay. Status shows the
// achieved weight at each step, the user's Service is left as written
// and selects both revisions, every revision still gets its own headless
// Service, and no Istio object is ever written although the Istio writer
// is the reconciler's publisher.
func TestReplicasRouterCanary(t *testing.T) {
	h := harnessOf(t, replicasCheckout)
	h.r.Publisher = Publishers{NewAcceptedOnWrite(&istio.Publisher{Writer: istio.NewWriter(h.c)}), h.plane}
	user := h.userService()
	h.drive("healthy on v1", healthy)
	v1 := h.ro.Status.StableRevision
	h.wantReplicas(v1, 10)
	h.wantSplit(0, 0, 0, 10)

	v2 := h.setImage("checkout:v2")
	h.mustReconcile()
	h.wantReplicas(v2, 1) // the canary's pod first
	h.wantReplicas(v1, 10)
	h.wantSplit(0, 0, 0, 10)
	if !strings.Contains(h.ro.Status.Message, "waiting for the canary's pods (0 of 1 available)") {
		t.Fatalf("message %q: want it waiting for the canary's pod", h.ro.Status.Message)
	}

	h.drive("10% in force", h.stepIs(1))
	h.wantReplicas(v2, 1)
	h.wantReplicas(v1, 9)
	h.wantSplit(10, 10, 1, 9)
	if !strings.Contains(h.ro.Status.Message, "setWeight 10 → 1 of 10 pods (10%)") {
		t.Fatalf("message %q: want the achieved weight", h.ro.Status.Message)
	}
	// What xDS clients are served (the Feeder rebuilds it from status):
	// the pods' share.
	if p, err := engine.PersistedPlan(h.ro); err != nil || p.Hosts[0].Weight(plan.Canary) != 10 {
		t.Fatalf("persisted plan %+v, %v: want 10%% to the canary", p, err)
	}

	h.command("to-50", v1alpha1.CommandPromote)
	h.mustReconcile()
	h.wantReplicas(v2, 5) // canary up first ...
	h.wantReplicas(v1, 9)
	h.wantSplit(10, 10, 1, 9)
	h.drive("50% in force", h.stepIs(3))
	h.wantReplicas(v2, 5) // ... stable down once they are available
	h.wantReplicas(v1, 5)
	h.wantSplit(50, 50, 5, 5)
	h.noIstioObjects()

	h.command("abort", v1alpha1.CommandAbort)
	h.mustReconcile()
	if h.ro.Status.Phase != v1alpha1.PhaseDegraded {
		t.Fatalf("after abort: phase %s (%s)", h.ro.Status.Phase, h.ro.Status.Message)
	}
	h.wantReplicas(v2, 0)
	h.wantReplicas(v1, 10)
	h.wantSplit(0, 0, 0, 10)

	h.markAvailable()
	h.command("retry", v1alpha1.CommandRetry)
	h.drive("10% in force again", h.stepIs(1))
	h.wantSplit(10, 10, 1, 9)
	h.command("full", v1alpha1.CommandPromoteFull)
	h.mustReconcile()
	h.wantReplicas(v2, 10)
	h.wantReplicas(v1, 9)
	h.drive("promoted", func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision == v2 })
	h.wantReplicas(v2, 10)
	h.wantReplicas(v1, 9) // the pods it had, for the scale-down delay
	if sd := h.ro.Status.ScaleDown; sd == nil || sd.Revision != v1 || sd.Replicas == nil || *sd.Replicas != 9 {
		t.Fatalf("scaleDown %+v: want %s kept at 9", sd, v1)
	}
	h.wantSplit(0, 0, 0, 10)
	h.now = h.now.Add(2 * time.Second)
	h.mustReconcile()
	h.wantReplicas(v1, 0)

	h.noIstioObjects()
	got := &corev1.Service{}
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.key.Namespace, Name: "checkout"}, got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != user.ResourceVersion || len(got.OwnerReferences) > 0 {
		t.Errorf("the user's Service was written: resourceVersion %s → %s, owners %v", user.ResourceVersion, got.ResourceVersion, got.OwnerReferences)
	}
	sel := labels.SelectorFromSet(got.Spec.Selector)
	for _, rev := range []string{v1, v2} {
		rs := h.replicaSet(rev)
		if !sel.Matches(labels.Set(rs.Spec.Template.Labels)) {
			t.Errorf("the user's Service (%s) does not select the pods of %s (%v)", sel, rev, rs.Spec.Template.Labels)
		}
		if svc := h.service(rev); svc.Labels[workload.LabelRevision] != rev || svc.Name == "checkout" {
			t.Errorf("Service of revision %s: %s %v", rev, svc.Name, svc.Labels)
		}
	}
}
