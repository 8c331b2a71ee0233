package gatewayapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// userGRPCRoute is a GRPCRoute with two rules, by method: "reads" (every
// method of the Ratings service but Put) and "writes" (Put), each with a
// filter, attached to the mesh through the ratings Service (GAMMA).
func userGRPCRoute(ns string) *gatewayv1.GRPCRoute {
	exact := gatewayv1.GRPCMethodMatchExact
	header := func(name, value string) []gatewayv1.HTTPRouteFilter {
		return []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: gatewayv1.HTTPHeaderName(name), Value: value}}}}}
	}
	backend := func(name string) []gatewayv1.GRPCBackendRef {
		return []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(50051))}}}}
	}
	toGRPC := func(fs []gatewayv1.HTTPRouteFilter) []gatewayv1.GRPCRouteFilter {
		var out []gatewayv1.GRPCRouteFilter
		for _, f := range fs {
			out = append(out, gatewayv1.GRPCRouteFilter{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier, RequestHeaderModifier: f.RequestHeaderModifier})
		}
		return out
	}
	return &gatewayv1.GRPCRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "GRPCRoute"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ratings"},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "ratings", Port: ptr.To(gatewayv1.PortNumber(50051)),
			}}},
			Rules: []gatewayv1.GRPCRouteRule{
				{
					Name:        ptr.To(gatewayv1.SectionName("writes")),
					Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Type: &exact, Service: ptr.To("ratings.v1.Ratings"), Method: ptr.To("Put")}}},
					Filters:     toGRPC(header("x-route", "writes")),
					BackendRefs: backend("ratings-primary"),
				},
				{
					Name:        ptr.To(gatewayv1.SectionName("reads")),
					Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Type: &exact, Service: ptr.To("ratings.v1.Ratings")}}},
					Filters:     toGRPC(header("x-route", "reads")),
					BackendRefs: backend("ratings"),
				},
			},
		},
	}
}

// TestGRPCRouteRollout takes a GRPCRoute's "reads" rule through a canary
// and a header route narrowed to one method: the rule Sluice puts before
// "reads" matches the rule's service, the plan's method and the beta
// header. The "writes" rule, the filters and the parentRef stay as
// written. Then the gateway refuses the route, and with onNack: Pause the
// rollout pauses with the gateway's message.
func TestGRPCRouteRollout(t *testing.T) {
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "sluice-grpc-")
	gitopsApply(t, c, userGRPCRoute(ns))
	key := client.ObjectKey{Namespace: ns, Name: "ratings"}
	original := routeOf(t, c, GRPCRoute, key)

	beta := v1alpha1.RouteMatch{
		Headers: []v1alpha1.HeaderMatch{{Name: "x-beta", Exact: ptr.To("true")}},
		URI:     &v1alpha1.URIMatch{Exact: ptr.To("/ratings.v1.Ratings/Get")},
	}
	router := v1alpha1.Router{GRPCRoute: &v1alpha1.GatewayRouteRef{Name: "ratings", Rules: []v1alpha1.GatewayRuleRef{{Name: "reads"}}}}
	ro := newRollout(ns, "ratings", "ratings:v1", 50051, router,
		setWeight(25), pauseFor(time.Minute),
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: "beta", Match: []v1alpha1.RouteMatch{beta}}}, pauseFor(time.Minute))
	ro.Spec.Rollback.OnNack = v1alpha1.ActionPause
	v1, _ := engine.DesiredRevision(&ro.Spec)
	h := newHarness(t, c, ro, GRPCRoute, "ratings")
	svc := func(rev string, w int) string {
		return fmt.Sprintf("%s:50051=%d", workload.ServiceName("ratings", rev), w)
	}

	h.drive("healthy", h.accepting, healthy)
	checkRawRoute(t, h.live(), original, "reads", []string{svc(v1, 100)}, nil)

	v2 := h.setImage("ratings:v2")
	h.drive("at 25%", h.accepting, stepAcked(1))
	checkRawRoute(t, h.live(), original, "reads", []string{svc(v1, 75), svc(v2, 25)}, nil)

	h.now = h.now.Add(61 * time.Second)
	h.drive("header route", h.accepting, stepAcked(3))
	checkRawRoute(t, h.live(), original, "reads", []string{svc(v1, 75), svc(v2, 25)}, map[string]string{
		"reads-header-beta": `[{"headers":[{"name":"x-beta","type":"Exact","value":"true"}],"method":{"method":"Get","service":"ratings.v1.Ratings","type":"Exact"}}]`,
	})

	setParentStatus(t, c, GRPCRoute, key, metav1.ConditionFalse, "UnsupportedValue", "method matches are not supported", 0)
	h.mustReconcile()
	if st := h.ro.Status; st.Phase != v1alpha1.PhasePaused || !strings.Contains(st.Message, "Accepted=False (UnsupportedValue): method matches are not supported") {
		t.Fatalf("phase %s, message %q: want paused with the gateway's message", st.Phase, st.Message)
	}

	// The Rollout is deleted: its per-revision Services go with it, and
	// the route gets the backends it was declared with back.
	if err := c.Delete(context.Background(), h.ro); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: h.key}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the route released", 10*time.Second, func() bool {
		return mustJSON(t, h.live().Object["spec"]) == mustJSON(t, original.Object["spec"])
	})
	checkReleased(t, h.live(), original)
}

// checkRawRoute compares a route with the user's rule by rule as raw
// JSON, for any route kind: the parentRefs and every rule but the managed
// one unchanged; the managed one unchanged but for its backendRefs
// (backends, as name:port=weight); before it, the extra rules named,
// which are the managed rule with their own name, matches (JSON) and
// backendRefs.
func checkRawRoute(t *testing.T, live, original *unstructured.Unstructured, managed string, backends []string, extra map[string]string) {
	t.Helper()
	if a, b := mustJSON(t, live.Object["spec"].(map[string]any)["parentRefs"]), mustJSON(t, original.Object["spec"].(map[string]any)["parentRefs"]); a != b {
		t.Errorf("parentRefs %s, want %s", a, b)
	}
	got, err := rulesOf(live)
	if err != nil {
		t.Fatal(err)
	}
	user, err := rulesOf(original)
	if err != nil {
		t.Fatal(err)
	}
	var stub rule
	for _, r := range user {
		if r.name() == managed {
			stub = r
		}
	}
	i := 0
	for _, r := range got {
		if m, ok := extra[r.name()]; ok {
			if mustJSON(t, r["matches"]) != m {
				t.Errorf("rule %s matches %s, want %s", r.name(), mustJSON(t, r["matches"]), m)
			}
			compareBut(t, r, stub, "name", "matches", "backendRefs")
			continue
		}
		if i >= len(user) {
			t.Fatalf("rule %s is neither the user's nor an extra rule", r.name())
		}
		u := user[i]
		i++
		if r.name() != managed {
			compareBut(t, r, u)
			continue
		}
		compareBut(t, r, u, "backendRefs")
		var refs []gatewayv1.BackendRef
		if err := json.Unmarshal(r["backendRefs"], &refs); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range refs {
			names = append(names, fmt.Sprintf("%s:%d=%d", b.Name, *b.Port, *b.Weight))
		}
		if fmt.Sprint(names) != fmt.Sprint(backends) {
			t.Errorf("rule %s sends to %v, want %v", managed, names, backends)
		}
	}
	if i != len(user) {
		t.Errorf("%d of the user's %d rules left", i, len(user))
	}
}

// compareBut compares two rules field by field as JSON, but the fields
// named.
func compareBut(t *testing.T, got, want rule, but ...string) {
	t.Helper()
	g, w := got.clone(), want.clone()
	for _, k := range but {
		delete(g, k)
		delete(w, k)
	}
	if mustJSON(t, g) != mustJSON(t, w) {
		t.Errorf("rule %s:\n%s\nwant\n%s", want.name(), mustJSON(t, g), mustJSON(t, w))
	}
}

// TestCreatedRoute: with create, Sluice creates the route the Rollout
// names when there is none, owned by the Rollout, and once it holds the
// plan, reconciles send it nothing: the route reads back as it was sent,
// the API server's defaults included.
func TestCreatedRoute(t *testing.T) {
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "sluice-create-")
	router := v1alpha1.Router{GRPCRoute: &v1alpha1.GatewayRouteRef{
		Name:   "ratings",
		Rules:  []v1alpha1.GatewayRuleRef{{Name: "all"}},
		Create: &v1alpha1.GatewayRouteCreate{ParentRefs: []v1alpha1.GatewayParentRef{{Kind: "Service", Name: "ratings", Port: ptr.To[int32](50051)}}},
	}}
	ro := newRollout(ns, "ratings", "ratings:v1", 50051, router, setWeight(50))
	h := newHarness(t, c, ro, GRPCRoute, "ratings")
	api := &apiClient{Reader: c, Writer: c}
	h.pub = NewPublisher(NewWriter(api))
	h.r.Publisher, h.r.Acknowledger = h.pub, h.pub
	h.drive("healthy", h.accepting, healthy)

	live := h.live()
	if o := live.GetOwnerReferences(); len(o) != 1 || o[0].Kind != "Rollout" || o[0].Name != "ratings" {
		t.Errorf("created route's owners %v, want the Rollout", o)
	}
	rules, err := rulesOf(live)
	if err != nil || len(rules) != 1 || rules[0].name() != "all" {
		t.Fatalf("created route's rules %v (%v)", rules, err)
	}
	applies, gen := api.applies.Load(), live.GetGeneration()
	for range 3 {
		h.mustReconcile()
	}
	if n := api.applies.Load() - applies; n != 0 || h.live().GetGeneration() != gen {
		t.Errorf("%d applies, generation %d → %d, for a created route that holds the plan", n, gen, h.live().GetGeneration())
	}

	// Someone points Sluice's rule elsewhere by hand: the next write puts
	// it back.
	edited := h.live()
	rulesRaw, _, _ := unstructured.NestedSlice(edited.Object, "spec", "rules")
	rulesRaw[0].(map[string]any)["backendRefs"] = []any{map[string]any{"name": "elsewhere", "port": int64(50051)}}
	if err := unstructured.SetNestedSlice(edited.Object, rulesRaw, "spec", "rules"); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(context.Background(), edited); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	if refs := mustJSON(t, h.live().Object["spec"].(map[string]any)["rules"]); strings.Contains(refs, "elsewhere") || !strings.Contains(refs, "ratings-"+h.ro.Status.StableRevision) {
		t.Errorf("rules %s after the edit: want the stable revision's Service back", refs)
	}
}
