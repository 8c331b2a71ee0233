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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// userGRPCRoute is a GRPCRoute with three rules, by method, a filter on
// each: "writes" (Put), "reads" (every other method of the Ratings
// service) and "admin" (the Admin service, through an ExtensionRef
// filter), two hostnames, attached to the mesh through the ratings
// Service (GAMMA). (A GRPCRoute rule has no timeouts.)
func userGRPCRoute(ns string) *gatewayv1.GRPCRoute {
	exact := gatewayv1.GRPCMethodMatchExact
	header := func(name, value string) []gatewayv1.GRPCRouteFilter {
		return []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: gatewayv1.HTTPHeaderName(name), Value: value}}}}}
	}
	backend := func(name string) []gatewayv1.GRPCBackendRef {
		return []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(50051))}}}}
	}
	return &gatewayv1.GRPCRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "GRPCRoute"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ratings", Labels: map[string]string{"team": "books"}},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "ratings", Port: ptr.To(gatewayv1.PortNumber(50051)),
			}}},
			Hostnames: []gatewayv1.Hostname{"ratings.example.com", "ratings.internal.example.com"},
			Rules: []gatewayv1.GRPCRouteRule{
				{
					Name:        ptr.To(gatewayv1.SectionName("writes")),
					Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Type: &exact, Service: ptr.To("ratings.v1.Ratings"), Method: ptr.To("Put")}}},
					Filters:     header("x-route", "writes"),
					BackendRefs: backend("ratings-primary"),
				},
				{
					Name:        ptr.To(gatewayv1.SectionName("reads")),
					Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Type: &exact, Service: ptr.To("ratings.v1.Ratings")}}},
					Filters:     header("x-route", "reads"),
					BackendRefs: backend("ratings"),
				},
				{
					Name:    ptr.To(gatewayv1.SectionName("admin")),
					Matches: []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Type: &exact, Service: ptr.To("ratings.v1.Admin")}}},
					Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterExtensionRef,
						ExtensionRef: &gatewayv1.LocalObjectReference{Group: "example.com", Kind: "RateLimit", Name: "admin"}}},
					BackendRefs: backend("ratings-admin"),
				},
			},
		},
	}
}

// TestGRPCRouteRollout takes a GRPCRoute's "reads" rule through the whole
// sequence the HTTPRoute test runs: 25%, a header route narrowed to one
// method (the rule Sluice puts before "reads" matches the rule's service,
// the plan's method and the beta header), a 10% mirror, 50% and
// promotion, each step gated on the gateway's status and compared with
// the user's route as JSON rule by rule (every other rule, the parentRef
// and the hostnames as written). The next revision is refused by the
// gateway: with onNack: Pause the rollout pauses with the gateway's
// message, PartiallyInvalid included, and an abort puts the route back on
// the stable revision. Then the Rollout is deleted, and the route gets
// its declared backends back.
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
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: "beta", Match: []v1alpha1.RouteMatch{beta}}}, pauseFor(time.Minute),
		v1alpha1.CanaryStep{SetMirror: &v1alpha1.MirrorStep{Percent: 10}}, pauseFor(time.Minute),
		setWeight(50), pauseFor(time.Minute))
	ro.Spec.Rollback.OnNack = v1alpha1.ActionPause
	v1, _ := engine.DesiredRevision(&ro.Spec)
	h := newHarness(t, c, ro, GRPCRoute, "ratings")
	svc := func(rev string, w int) string {
		return fmt.Sprintf("%s:50051=%d", workload.ServiceName("ratings", rev), w)
	}
	check := func(what string, backends []string, mirror string, extra map[string]string) {
		t.Helper()
		checkRawRoute(t, h.live(), original, "reads", backends, mirror, extra)
		if t.Failed() {
			t.Fatalf("after %s", what)
		}
	}
	betaMatch := map[string]string{
		"reads-header-beta": `[{"headers":[{"name":"x-beta","type":"Exact","value":"true"}],"method":{"method":"Get","service":"ratings.v1.Ratings","type":"Exact"}}]`,
	}

	// Nothing counts before the gateway reports on the written generation.
	h.mustReconcile()
	h.mustReconcile()
	if tr := h.ro.Status.Traffic; tr.PlanVersion == "" || tr.AcknowledgedVersion != "" {
		t.Fatalf("traffic %+v: want a plan published and not acknowledged", tr)
	}
	h.drive("healthy", h.accepting, healthy)
	check("healthy", []string{svc(v1, 100)}, "", nil)

	v2 := h.setImage("ratings:v2")
	h.drive("at 25%", nil, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 25 })
	h.mustReconcile()
	if h.ro.Status.StepAcknowledgedAt != nil {
		t.Fatal("step 25% acknowledged before the gateway accepted it")
	}
	h.drive("25% acknowledged", h.accepting, stepAcked(1))
	weighted := []string{svc(v1, 75), svc(v2, 25)}
	check("setWeight 25", weighted, "", nil)

	h.now = h.now.Add(61 * time.Second)
	h.drive("header route", h.accepting, stepAcked(3))
	check("setHeaderRoute beta", weighted, "", betaMatch)

	h.now = h.now.Add(61 * time.Second)
	h.drive("mirror", h.accepting, stepAcked(5))
	check("setMirror 10", weighted, workload.ServiceName("ratings", v2), betaMatch)

	h.now = h.now.Add(61 * time.Second)
	h.drive("50%", h.accepting, stepAcked(7))
	check("setWeight 50", []string{svc(v1, 50), svc(v2, 50)}, workload.ServiceName("ratings", v2), betaMatch)

	h.now = h.now.Add(61 * time.Second)
	h.drive("promoted", h.accepting, func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision == v2 })
	check("promotion", []string{svc(v2, 100)}, "", nil)

	// v3: the gateway refuses the 25% route; onNack: Pause pauses with
	// its message.
	v3 := h.setImage("ratings:v3")
	h.drive("v3 at 25%", nil, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 25 })
	check("v3 setWeight 25", []string{svc(v2, 75), svc(v3, 25)}, "", nil)
	setParentStatus(t, c, GRPCRoute, key, metav1.ConditionFalse, "UnsupportedValue", "method matches are not supported", 0)
	h.mustReconcile()
	if st := h.ro.Status; st.Phase != v1alpha1.PhasePaused || !strings.Contains(st.Message, "Accepted=False (UnsupportedValue): method matches are not supported") {
		t.Fatalf("phase %s, message %q: want paused with the gateway's message", st.Phase, st.Message)
	}

	// An abort puts everything back on v2, counted once the gateway
	// accepts it.
	h.command("abort", v1alpha1.CommandAbort)
	h.drive("aborted and acknowledged", h.accepting, func(ro *v1alpha1.Rollout) bool {
		tr := ro.Status.Traffic
		return ro.Status.Phase == v1alpha1.PhaseDegraded && tr.CanaryWeight == 0 && tr.AcknowledgedVersion == tr.PlanVersion
	})
	check("abort", []string{svc(v2, 100)}, "", nil)

	// A retry: the gateway takes the route but drops rules it finds
	// invalid (PartiallyInvalid): the plan is not in force as written.
	h.command("retry", v1alpha1.CommandRetry)
	h.drive("v3 at 25% again", nil, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 25 })
	partiallyInvalid(t, c, GRPCRoute, key, "rule reads: backend weights are not supported")
	h.mustReconcile()
	if st := h.ro.Status; st.Phase != v1alpha1.PhasePaused || !strings.Contains(st.Message, "PartiallyInvalid=True (UnsupportedValue): rule reads: backend weights are not supported") {
		t.Fatalf("phase %s, message %q: want paused with the gateway's PartiallyInvalid message", st.Phase, st.Message)
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

// partiallyInvalid plays a gateway that accepts the route at its current
// generation but reports PartiallyInvalid with msg.
func partiallyInvalid(t *testing.T, c client.Client, kind Kind, key client.ObjectKey, msg string) {
	t.Helper()
	accept(t, c, kind, key)
	u := routeOf(t, c, kind, key)
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	for _, p := range parents {
		pm := p.(map[string]any)
		conds, _ := pm["conditions"].([]any)
		pm["conditions"] = append(conds, map[string]any{
			"type": string(gatewayv1.RouteConditionPartiallyInvalid), "status": string(metav1.ConditionTrue), "reason": "UnsupportedValue",
			"message": msg, "observedGeneration": u.GetGeneration(), "lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339),
		})
	}
	if err := unstructured.SetNestedSlice(u.Object, parents, "status", "parents"); err != nil {
		t.Fatal(err)
	}
	if err := c.Status().Update(context.Background(), u); err != nil {
		t.Fatal(err)
	}
}

// command issues a manual command on the harness's Rollout, as the CLI
// does.
func (h *harness) command(id string, kind v1alpha1.CommandKind) {
	h.t.Helper()
	p, err := controller.CommandPatch(controller.Command{ID: id, Kind: kind, By: "test", At: h.now})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.c.Patch(context.Background(), h.ro, client.RawPatch(types.MergePatchType, p)); err != nil {
		h.t.Fatal(err)
	}
}

// checkRawRoute compares a route with the user's rule by rule as raw
// JSON, for any route kind: the parentRefs and every rule but the managed
// one unchanged; the managed one unchanged but for its backendRefs
// (backends, as name:port=weight) and, with a mirror, a RequestMirror
// filter to that Service after its own; before it, the extra rules named,
// which are the managed rule with their own name, matches (JSON) and
// backendRefs.
func checkRawRoute(t *testing.T, live, original *unstructured.Unstructured, managed string, backends []string, mirror string, extra map[string]string) {
	t.Helper()
	for _, f := range []string{"parentRefs", "hostnames"} {
		if a, b := mustJSON(t, live.Object["spec"].(map[string]any)[f]), mustJSON(t, original.Object["spec"].(map[string]any)[f]); a != b {
			t.Errorf("%s %s, want %s", f, a, b)
		}
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
		compareBut(t, r, u, "backendRefs", "filters")
		checkMirror(t, r, u, mirror)
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

// checkMirror checks a managed rule's filters: the user's, then a
// RequestMirror to the Service mirror when it is not empty.
func checkMirror(t *testing.T, got, user rule, mirror string) {
	t.Helper()
	var have, want []json.RawMessage
	if len(got["filters"]) > 0 {
		if err := json.Unmarshal(got["filters"], &have); err != nil {
			t.Fatal(err)
		}
	}
	if len(user["filters"]) > 0 {
		if err := json.Unmarshal(user["filters"], &want); err != nil {
			t.Fatal(err)
		}
	}
	n := len(want)
	if mirror != "" {
		n++
	}
	if len(have) != n || mustJSON(t, have[:len(want)]) != mustJSON(t, want) {
		t.Errorf("rule %s filters %s, want the user's %s and a mirror to %q", user.name(), got["filters"], user["filters"], mirror)
		return
	}
	if mirror == "" {
		return
	}
	var f gatewayv1.GRPCRouteFilter
	if err := json.Unmarshal(have[n-1], &f); err != nil {
		t.Fatal(err)
	}
	if f.Type != gatewayv1.GRPCRouteFilterRequestMirror || f.RequestMirror == nil || string(f.RequestMirror.BackendRef.Name) != mirror ||
		f.RequestMirror.Percent == nil || *f.RequestMirror.Percent != 10 {
		t.Errorf("rule %s's last filter %s, want a 10%% RequestMirror to %s", user.name(), have[n-1], mirror)
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
