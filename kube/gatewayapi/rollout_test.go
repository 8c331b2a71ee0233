package gatewayapi

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// reviewsRollout runs a canary of reviews through the "reviews" rule of
// the user's HTTPRoute: 20%, a header route for jason, a 10% mirror,
// 50%, then promotion.
func reviewsRollout(ns string) *v1alpha1.Rollout {
	router := v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: "reviews"}}}}
	jason := v1alpha1.RouteMatch{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: ptr.To("jason")}}}
	return newRollout(ns, "reviews", "reviews:v1", reviewsPort, router,
		setWeight(20), pauseFor(time.Minute),
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: "jason", Match: []v1alpha1.RouteMatch{jason}}}, pauseFor(time.Minute),
		v1alpha1.CanaryStep{SetMirror: &v1alpha1.MirrorStep{Percent: 10}}, pauseFor(time.Minute),
		setWeight(50), pauseFor(time.Minute),
	)
}

// TestHTTPRouteRollout takes the user's HTTPRoute (three rules, a filter
// on each, a timeout, two hostnames, applied by a GitOps tool) through a
// whole canary, a header route, a mirror step, promotion and an abort,
// with the test playing the gateway controller. After each step the route
// is compared with the user's (checkRoute): only the managed rule's
// backendRefs and filters differ, and the header route's rule stands
// before it. The gateway's status gates every step: a plan counts once
// every parent shows Accepted and ResolvedRefs at the written generation,
// and Accepted=False stops the rollout with the gateway's message.
func TestHTTPRouteRollout(t *testing.T) {
	c := env.Client(t)
	routeKey := userRoute(t, c, "sluice-gw-")
	ns := routeKey.Namespace
	original := routeOf(t, c, HTTPRoute, routeKey)

	ro := reviewsRollout(ns)
	v1, err := engine.DesiredRevision(&ro.Spec)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, c, ro, HTTPRoute, "reviews")
	svc := func(rev string, w int) string {
		return fmt.Sprintf("%s:9080=%d", workload.ServiceName("reviews", rev), w)
	}
	check := func(what string, want step) {
		t.Helper()
		live := h.live()
		checkRoute(t, live, original, "reviews", want)
		servicesExist(t, c, ns, backendNames(specRules(t, live)))
		if t.Failed() {
			t.Fatalf("after %s", what)
		}
	}

	// The first plan is written, but no gateway has said a word: pending.
	h.mustReconcile()
	h.mustReconcile()
	if tr := h.ro.Status.Traffic; tr.PlanVersion == "" || tr.AcknowledgedVersion != "" {
		t.Fatalf("traffic %+v: want a plan published and not acknowledged", tr)
	}
	check("the first plan", step{backends: []string{svc(v1, 100)}})
	// A status observed at an older generation does not count either.
	setParentStatus(t, c, HTTPRoute, routeKey, metav1.ConditionTrue, "Accepted", "", -1)
	h.mustReconcile()
	if tr := h.ro.Status.Traffic; tr.AcknowledgedVersion != "" {
		t.Fatalf("a status of generation %d acknowledged plan %s", h.live().GetGeneration()-1, tr.PlanVersion)
	}
	h.accepting()
	h.drive("healthy", h.accepting, healthy)
	gen := h.live().GetGeneration()

	// 20%: the step waits for the gateway, then counts.
	v2 := h.setImage("reviews:v2")
	h.drive("at 20%", h.accepting, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 20 })
	for range 2 {
		h.mustReconcile()
		if h.ro.Status.StepAcknowledgedAt != nil {
			t.Fatal("step 20% acknowledged before the gateway accepted it")
		}
	}
	h.drive("step 20% acknowledged", h.accepting, stepAcked(1))
	weighted := []string{svc(v1, 80), svc(v2, 20)}
	check("setWeight 20", step{backends: weighted})
	if g := h.live().GetGeneration(); g <= gen {
		t.Fatalf("generation %d after the 20%% write, was %d", g, gen)
	}
	gen = h.live().GetGeneration()
	h.mustReconcile()
	if g := h.live().GetGeneration(); g != gen {
		t.Fatalf("an unchanged plan wrote the route again: generation %d → %d", gen, g)
	}

	jason := step{
		backends:     weighted,
		extra:        map[string][]string{"reviews-header-jason": {svc(v2, 100)}},
		extraMatches: jasonMatches,
	}
	h.now = h.now.Add(61 * time.Second)
	h.drive("header route", h.accepting, stepAcked(3))
	check("setHeaderRoute jason", jason)

	h.now = h.now.Add(61 * time.Second)
	h.drive("mirror", h.accepting, stepAcked(5))
	jason.mirror = workload.ServiceName("reviews", v2)
	check("setMirror 10", jason)

	h.now = h.now.Add(61 * time.Second)
	h.drive("50%", h.accepting, stepAcked(7))
	jason.backends = []string{svc(v1, 50), svc(v2, 50)}
	check("setWeight 50", jason)

	h.now = h.now.Add(61 * time.Second)
	h.drive("promoted", h.accepting, func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision == v2 })
	check("promotion", step{backends: []string{svc(v2, 100)}})

	// v3: the gateway refuses the 20% route; the rollout aborts with the
	// gateway's message, escaped, and the route goes back to v2.
	v3 := h.setImage("reviews:v3")
	h.drive("v3 at 20%", h.accepting, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 20 })
	check("v3 setWeight 20", step{backends: []string{svc(v2, 80), svc(v3, 20)}})
	setParentStatus(t, c, HTTPRoute, routeKey, metav1.ConditionFalse, "NotAllowedByListeners", "listener https: \x1b[31mno route for reviews", 0)
	h.mustReconcile()
	st := h.ro.Status
	if st.Phase != v1alpha1.PhaseDegraded || !strings.Contains(st.Message, "Accepted=False (NotAllowedByListeners)") ||
		!strings.Contains(st.Message, `listener https: \x1b[31mno route for reviews`) || !strings.Contains(st.Message, gatewayController) {
		t.Fatalf("after Accepted=False: phase %s, message %q; want an abort naming the gateway, its reason and its escaped message", st.Phase, st.Message)
	}
	h.drive("aborted and acknowledged", h.accepting, func(ro *v1alpha1.Rollout) bool {
		tr := ro.Status.Traffic
		return ro.Status.Phase == v1alpha1.PhaseDegraded && tr.CanaryWeight == 0 && tr.AcknowledgedVersion == tr.PlanVersion
	})
	check("abort", step{backends: []string{svc(v2, 100)}})

	// The Rollout moves to Istio: the route is the user's again, byte for
	// byte, without Sluice's label and annotation.
	h.ro.Spec.Service.Routers = []v1alpha1.Router{{Istio: &v1alpha1.IstioRouter{}}}
	if err := c.Update(context.Background(), h.ro); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	checkReleased(t, h.live(), original)
}

// checkReleased compares a route with the user's: spec, labels and
// annotations.
func checkReleased(t *testing.T, live, original *unstructured.Unstructured) {
	t.Helper()
	if a, b := mustJSON(t, live.Object["spec"]), mustJSON(t, original.Object["spec"]); a != b {
		t.Errorf("released route\n%s\nwant the user's\n%s", a, b)
	}
	if a, b := mustJSON(t, live.GetAnnotations()), mustJSON(t, original.GetAnnotations()); a != b {
		t.Errorf("released route's annotations %s, want %s", a, b)
	}
	if a, b := mustJSON(t, live.GetLabels()), mustJSON(t, original.GetLabels()); a != b {
		t.Errorf("released route's labels %s, want %s", a, b)
	}
}

func backendNames(rules []gatewayv1.HTTPRouteRule) []string {
	var out []string
	for _, r := range rules {
		for _, b := range r.BackendRefs {
			if string(b.Name) != "reviews-health" && string(b.Name) != "reviews-legacy" {
				out = append(out, string(b.Name))
			}
		}
	}
	return out
}
