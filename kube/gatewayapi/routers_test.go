package gatewayapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestSeveralRouters: one Rollout routes through the ingress gateway's
// HTTPRoute and the mesh's GAMMA route on its Service at once. Both carry
// the same plan version and weights; a step counts only once both
// routes' parents took it, and the mesh refusing it aborts the rollout
// with the mesh's message whatever the gateway said.
func TestSeveralRouters(t *testing.T) {
	c := env.Client(t)
	ingress := userRoute(t, c, "sluice-routers-")
	ns := ingress.Namespace
	mesh := userHTTPRoute()
	mesh.Namespace, mesh.Name, mesh.Spec.Hostnames = ns, "reviews-mesh", nil
	mesh.Spec.ParentRefs = []gatewayv1.ParentReference{{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "reviews",
		Port: ptr.To(gatewayv1.PortNumber(reviewsPort))}}
	gitopsApply(t, c, mesh)
	meshKey := types.NamespacedName{Namespace: ns, Name: mesh.Name}

	rule := []v1alpha1.GatewayRuleRef{{Name: "reviews"}}
	ro := newRollout(ns, "reviews", "reviews:v1", reviewsPort, v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "reviews", Rules: rule}},
		setWeight(20), pauseFor(time.Minute))
	ro.Spec.Service.Routers = append(ro.Spec.Service.Routers, v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: mesh.Name, Rules: rule}})
	v1, _ := engine.DesiredRevision(&ro.Spec)
	h := newHarness(t, c, ro, HTTPRoute, "reviews")
	both := func() { h.accepting(); accept(t, c, HTTPRoute, meshKey) }
	h.drive("healthy", both, healthy)

	v2 := h.setImage("reviews:v2")
	h.drive("at 20%", nil, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 20 })
	want := []string{
		fmt.Sprintf("%s:9080=80", workload.ServiceName("reviews", v1)),
		fmt.Sprintf("%s:9080=20", workload.ServiceName("reviews", v2)),
	}
	for _, key := range []types.NamespacedName{ingress, meshKey} {
		live := routeOf(t, c, HTTPRoute, key)
		rules := specRules(t, live)
		i := slices.IndexFunc(rules, func(r gatewayv1.HTTPRouteRule) bool { return ptr.Deref(r.Name, "") == "reviews" })
		if i < 0 || !slices.Equal(backends(rules[i]), want) {
			t.Fatalf("%s: rule reviews sends to %v, want %v", key.Name, backends(rules[i]), want)
		}
		var recs map[string]struct {
			PlanVersion string `json:"planVersion"`
		}
		if err := json.Unmarshal([]byte(live.GetAnnotations()[AnnotationManagedRules]), &recs); err != nil {
			t.Fatal(err)
		}
		if got := recs["reviews"].PlanVersion; got != h.ro.Status.Traffic.PlanVersion {
			t.Errorf("%s records plan %q, want the Rollout's %q", key.Name, got, h.ro.Status.Traffic.PlanVersion)
		}
	}

	// The gateway takes it, the mesh has not answered: pending.
	for range 2 {
		h.accepting()
		h.mustReconcile()
		if h.ro.Status.StepAcknowledgedAt != nil {
			t.Fatal("step 20% acknowledged before the mesh took it")
		}
	}
	accept(t, c, HTTPRoute, meshKey)
	h.drive("20% acknowledged", nil, stepAcked(1))

	// v3: the gateway takes it, the mesh refuses it: abort.
	h.now = h.now.Add(61 * time.Second)
	h.drive("promoted", both, func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision == v2 })
	h.setImage("reviews:v3")
	h.drive("v3 at 20%", nil, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 20 })
	h.accepting()
	setParentStatus(t, c, HTTPRoute, meshKey, metav1.ConditionFalse, "NoMesh", "no mesh serves Service reviews", 0)
	h.mustReconcile()
	if st := h.ro.Status; st.Phase != v1alpha1.PhaseDegraded || !strings.Contains(st.Message, "HTTPRoute "+ns+"/reviews-mesh") ||
		!strings.Contains(st.Message, "Accepted=False (NoMesh): no mesh serves Service reviews") {
		t.Fatalf("phase %s, message %q: want an abort with the mesh's message", st.Phase, st.Message)
	}
}
