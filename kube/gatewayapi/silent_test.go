package gatewayapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestSilentGateway: a gateway that leaves a written generation
// unanswered is judged as a silent xDS proxy is. Past
// spec.dataPlane.ackDeadlineSeconds it is reported in
// status.traffic.staleNodes, named by route, parent and controller; with
// Hold (the default) the step waits for it, with Exclude the step counts
// once the route's other parent took the plan.
func TestSilentGateway(t *testing.T) {
	c := env.Client(t)
	for _, policy := range []v1alpha1.SilentProxyPolicy{v1alpha1.SilentHold, v1alpha1.SilentExclude} {
		t.Run(string(policy), func(t *testing.T) {
			// The user's route, attached to two gateways.
			user := userHTTPRoute()
			user.Namespace = kubetest.Namespace(t, c, "sluice-silent-")
			user.Spec.ParentRefs = append(user.Spec.ParentRefs, gatewayv1.ParentReference{Name: "internal", Namespace: ptr.To(gatewayv1.Namespace("infra"))})
			gitopsApply(t, c, user)
			ro := newRollout(user.Namespace, "reviews", "reviews:v1", reviewsPort,
				v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: "reviews"}}}},
				setWeight(20), pauseFor(time.Minute))
			ro.Spec.DataPlane = v1alpha1.DataPlanePolicy{AckDeadlineSeconds: ptr.To[int32](30), SilentProxies: policy}
			h := newHarness(t, c, ro, HTTPRoute, "reviews")
			h.pub.Now = func() time.Time { return h.now }
			h.drive("healthy", h.accepting, healthy)

			// v2 at 20%: only the public gateway answers.
			h.setImage("reviews:v2")
			h.drive("at 20%", nil, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 20 })
			acceptFirstParent(t, h)
			h.mustReconcile()
			if st := h.ro.Status; st.StepAcknowledgedAt != nil || st.Traffic.StaleNodes != nil {
				t.Fatalf("before the deadline: acknowledged at %v, stale %+v; want waiting, none stale", st.StepAcknowledgedAt, st.Traffic.StaleNodes)
			}
			h.now = h.now.Add(31 * time.Second)
			h.mustReconcile()
			sn := h.ro.Status.Traffic.StaleNodes
			if sn == nil || sn.Count != 1 || len(sn.Nodes) != 1 || !strings.Contains(sn.Nodes[0], "parent Gateway.gateway.networking.k8s.io infra/internal ("+gatewayController+")") {
				t.Fatalf("stale nodes %+v: want the internal gateway", sn)
			}
			acked := h.ro.Status.StepAcknowledgedAt != nil
			if want := policy == v1alpha1.SilentExclude; acked != want || sn.Excluded != want {
				t.Fatalf("with %s: step acknowledged %v, excluded %v; want %v", policy, acked, sn.Excluded, want)
			}
			if policy == v1alpha1.SilentHold {
				h.accepting()
				h.mustReconcile()
				if st := h.ro.Status; st.StepAcknowledgedAt == nil || st.Traffic.StaleNodes != nil {
					t.Fatalf("once both gateways took it: acknowledged at %v, stale %+v", st.StepAcknowledgedAt, st.Traffic.StaleNodes)
				}
			}
		})
	}
}

// acceptFirstParent plays the public gateway accepting the route's
// current generation while the internal one stays at the generation it
// last reported.
func acceptFirstParent(t *testing.T, h *harness) {
	t.Helper()
	u := h.live()
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	var st []gatewayv1.RouteParentStatus
	if err := fromUnstructured(parents, &st); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []gatewayv1.RouteConditionType{gatewayv1.RouteConditionAccepted, gatewayv1.RouteConditionResolvedRefs} {
		meta.SetStatusCondition(&st[0].Conditions, metav1.Condition{Type: string(typ), Status: metav1.ConditionTrue, Reason: string(typ),
			ObservedGeneration: u.GetGeneration(), LastTransitionTime: metav1.Now()})
	}
	if err := setStatus(u, gatewayv1.RouteStatus{Parents: st}); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Status().Update(context.Background(), u); err != nil {
		t.Fatal(err)
	}
}
