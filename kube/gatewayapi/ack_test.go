package gatewayapi

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/engine"
)

// TestJudge: what a route's status says of the generation Sluice wrote,
// for every parent and every controller that reports on it.
func TestJudge(t *testing.T) {
	t.Parallel()
	const gen = 4
	public := gatewayv1.ParentReference{Name: "public", Namespace: ptr.To(gatewayv1.Namespace("infra")), SectionName: ptr.To(gatewayv1.SectionName("https"))}
	mesh := gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "reviews"}
	cond := func(typ gatewayv1.RouteConditionType, st metav1.ConditionStatus, g int64, msg string) metav1.Condition {
		return metav1.Condition{Type: string(typ), Status: st, ObservedGeneration: g, Reason: "Reason", Message: msg}
	}
	ok := func(g int64) []metav1.Condition {
		return []metav1.Condition{cond(gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, g, ""), cond(gatewayv1.RouteConditionResolvedRefs, metav1.ConditionTrue, g, "")}
	}
	report := func(p gatewayv1.ParentReference, controller string, cs ...metav1.Condition) gatewayv1.RouteParentStatus {
		return gatewayv1.RouteParentStatus{ParentRef: p, ControllerName: gatewayv1.GatewayController(controller), Conditions: cs}
	}
	partial := func(st metav1.ConditionStatus, g int64) []metav1.Condition {
		return append(ok(gen), cond(gatewayv1.RouteConditionPartiallyInvalid, st, g, "rule reviews-header-jason: unsupported match"))
	}
	for _, tc := range []struct {
		name    string
		parents []gatewayv1.ParentReference
		status  []gatewayv1.RouteParentStatus
		want    engine.AckState
		message string // a part of the rejection
	}{
		{"no status yet", []gatewayv1.ParentReference{public}, nil, engine.AckPending, ""},
		{"accepted at the generation", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen)...)}, engine.AckAcknowledged, ""},
		{"accepted later", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen+1)...)}, engine.AckAcknowledged, ""},
		{"observed an older generation", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen-1)...)}, engine.AckPending, ""},
		{"ResolvedRefs missing", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen)[0])}, engine.AckPending, ""},
		{"Unknown", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw",
			cond(gatewayv1.RouteConditionAccepted, metav1.ConditionUnknown, gen, ""), ok(gen)[1])}, engine.AckPending, ""},
		{"Accepted=False", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw",
			cond(gatewayv1.RouteConditionAccepted, metav1.ConditionFalse, gen, "no listener \x1b[31m"), ok(gen)[1])}, engine.AckRejected,
			`HTTPRoute shop/reviews, parent Gateway.gateway.networking.k8s.io infra/public#https (a/gw): Accepted=False (Reason): no listener \x1b[31m`},
		{"ResolvedRefs=False", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw",
			ok(gen)[0], cond(gatewayv1.RouteConditionResolvedRefs, metav1.ConditionFalse, gen, "service reviews-x not found"))}, engine.AckRejected,
			"ResolvedRefs=False (Reason): service reviews-x not found"},
		{"a False of an older generation is not about the write", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw",
			cond(gatewayv1.RouteConditionAccepted, metav1.ConditionFalse, gen-1, "old"), ok(gen)[1])}, engine.AckPending, ""},
		{"PartiallyInvalid=True", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", partial(metav1.ConditionTrue, gen)...)},
			engine.AckRejected, "PartiallyInvalid=True (Reason): rule reviews-header-jason: unsupported match"},
		{"PartiallyInvalid=True of an older generation", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", partial(metav1.ConditionTrue, gen-1)...)},
			engine.AckAcknowledged, ""},
		{"PartiallyInvalid=False", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", partial(metav1.ConditionFalse, gen)...)},
			engine.AckAcknowledged, ""},
		{"one of two parents reported", []gatewayv1.ParentReference{public, mesh}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen)...)}, engine.AckPending, ""},
		{"both parents", []gatewayv1.ParentReference{public, mesh}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen)...), report(mesh, "b/mesh", ok(gen)...)},
			engine.AckAcknowledged, ""},
		{"a second controller on one parent still behind", []gatewayv1.ParentReference{public}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen)...), report(public, "b/gw", ok(gen-1)...)},
			engine.AckPending, ""},
		{"the mesh refuses, the gateway accepts", []gatewayv1.ParentReference{public, mesh}, []gatewayv1.RouteParentStatus{report(public, "a/gw", ok(gen)...),
			report(mesh, "b/mesh", cond(gatewayv1.RouteConditionAccepted, metav1.ConditionFalse, gen, "no mesh here"), ok(gen)[1])},
			engine.AckRejected, "parent Service. shop/reviews (b/mesh): Accepted=False (Reason): no mesh here"},
		{"no parentRefs", nil, nil, engine.AckRejected, "has no parentRefs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := userHTTPRoute()
			r.Spec.ParentRefs = tc.parents
			r.Status.Parents = tc.status
			u := toUnstructured(t, r)
			got, msg, err := judge(HTTPRoute, &unstructured.Unstructured{Object: u.Object}, gen)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || (tc.message == "") != (msg == "") || !strings.Contains(msg, tc.message) {
				t.Errorf("judge: %v %q, want %v with %q", got, msg, tc.want, tc.message)
			}
		})
	}
}
