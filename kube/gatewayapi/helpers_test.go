package gatewayapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

const (
	testNS       = "shop"
	stableRev    = "aaaa1111"
	canaryRev    = "bbbb2222"
	stableSvc    = "reviews-" + stableRev
	canarySvc    = "reviews-" + canaryRev
	reviewsPort  = 9080
	reviewsHost1 = "reviews.example.com"
	reviewsHost2 = "reviews.internal.example.com"
)

// userHTTPRoute is what a user writes: three rules, a filter on each, a
// timeout on the one Sluice manages, two hostnames and a parent gateway.
func userHTTPRoute() *gatewayv1.HTTPRoute {
	prefix, exact := gatewayv1.PathMatchPathPrefix, gatewayv1.PathMatchExact
	svc := func(name string, port int32) []gatewayv1.HTTPBackendRef {
		return []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(port))}}}}
	}
	return &gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "reviews", Labels: map[string]string{"team": "books"}},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Name: "public", Namespace: ptr.To(gatewayv1.Namespace("infra")), SectionName: ptr.To(gatewayv1.SectionName("https")),
			}}},
			Hostnames: []gatewayv1.Hostname{reviewsHost1, reviewsHost2},
			Rules: []gatewayv1.HTTPRouteRule{
				{
					Name:    ptr.To(gatewayv1.SectionName("health")),
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &exact, Value: ptr.To("/healthz")}}},
					Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier,
						ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "cache-control", Value: "no-store"}}}}},
					BackendRefs: svc("reviews-health", 8081),
				},
				{
					Name:    ptr.To(gatewayv1.SectionName("reviews")),
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &prefix, Value: ptr.To("/reviews")}}},
					Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
						RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{Name: "x-via", Value: "edge"}}}}},
					BackendRefs: svc("reviews", reviewsPort),
					Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("5s"))},
				},
				{
					Name:    ptr.To(gatewayv1.SectionName("legacy")),
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &prefix, Value: ptr.To("/")}}},
					Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef,
						ExtensionRef: &gatewayv1.LocalObjectReference{Group: "example.com", Kind: "RateLimit", Name: "legacy"}}},
					BackendRefs: svc("reviews-legacy", 80),
				},
			},
		},
	}
}

func toUnstructured(t testing.TB, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// reviewsRef is the router of the tests: the "reviews" rule of the route.
func reviewsRef() v1alpha1.GatewayRouteRef {
	return v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: "reviews"}}}
}

// testPlan is a plan for reviews with routes for its two hosts.
func testPlan(routes ...plan.Route) plan.Plan {
	p := plan.Plan{Service: "reviews", Namespace: testNS, Subsets: []plan.Subset{{Name: plan.Stable, Revision: stableRev}}}
	for _, r := range routes {
		for _, d := range r.Destinations {
			if d.Subset == plan.Canary && len(p.Subsets) == 1 {
				p.Subsets = append(p.Subsets, plan.Subset{Name: plan.Canary, Revision: canaryRev})
			}
		}
	}
	for _, h := range []string{reviewsHost1, reviewsHost2} {
		p.Hosts = append(p.Hosts, plan.Host{Name: h, Port: reviewsPort, Routes: routes})
	}
	p.Seal()
	return p
}

func weights(stable, canary int32) plan.Route {
	return plan.Route{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: stable}, {Subset: plan.Canary, Weight: canary}}}
}

func headerRoute(name, header, value string) plan.Route {
	return plan.Route{
		Name:         name,
		Match:        []plan.Match{{Headers: []plan.HeaderMatch{{Name: header, Kind: plan.HeaderExact, Value: value}}}},
		Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}},
	}
}

func testInput(p plan.Plan) Input {
	return Input{Plan: p, Kind: HTTPRoute, Route: reviewsRef(), Rollout: "reviews"}
}

// applied is live after the API server took apply: Sluice's fields set,
// everything else as it was.
func applied(t testing.TB, live, apply *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out := live.DeepCopy()
	labels := out.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, apply.GetLabels())
	out.SetLabels(labels)
	ann := out.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, apply.GetAnnotations())
	out.SetAnnotations(ann)
	spec, _, _ := unstructured.NestedMap(apply.Object, "spec")
	for k, v := range spec {
		if err := unstructured.SetNestedField(out.Object, v, "spec", k); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// specRules decodes a route's rules as typed HTTPRoute rules.
func specRules(t testing.TB, u *unstructured.Unstructured) []gatewayv1.HTTPRouteRule {
	t.Helper()
	b, err := json.Marshal(u.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	var spec gatewayv1.HTTPRouteSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Rules
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	s, err := canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func render(t testing.TB, in Input, live *unstructured.Unstructured) *Desired {
	t.Helper()
	d, err := Render(in, live)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return d
}

// backends lists a rule's backendRefs as name:port=weight.
func backends(r gatewayv1.HTTPRouteRule) []string {
	var out []string
	for _, b := range r.BackendRefs {
		out = append(out, fmt.Sprintf("%s:%d=%d", b.Name, *b.Port, *b.Weight))
	}
	return out
}

// step is what the managed rule of a route looks like after a step.
type step struct {
	// backends of the managed rule, as name:port=weight.
	backends []string
	// extra are the rules Sluice puts right before the managed rule, by
	// name, with their backends.
	extra map[string][]string
	// extraMatches is the JSON of every extra rule's matches.
	extraMatches string
	// mirror is the Service of the mirror filter, if any.
	mirror string
}

// checkRoute compares the live route with the user's (original): the
// parentRefs and hostnames byte for byte, every rule but the managed one
// byte for byte and in order, the managed one but for its backendRefs and
// mirror filter, and the rules Sluice put right before it, which are the
// managed rule with their own matches and backends.
func checkRoute(t *testing.T, live, original *unstructured.Unstructured, managed string, want step) {
	t.Helper()
	for k, v := range original.GetLabels() {
		if live.GetLabels()[k] != v {
			t.Errorf("label %s is %q, want %q", k, live.GetLabels()[k], v)
		}
	}
	for k, v := range original.GetAnnotations() {
		if live.GetAnnotations()[k] != v {
			t.Errorf("annotation %s is %q, want %q", k, live.GetAnnotations()[k], v)
		}
	}
	for _, f := range []string{"parentRefs", "hostnames"} {
		got, _, _ := unstructured.NestedFieldNoCopy(live.Object, "spec", f)
		was, _, _ := unstructured.NestedFieldNoCopy(original.Object, "spec", f)
		if mustJSON(t, got) != mustJSON(t, was) {
			t.Errorf("spec.%s changed: %s, want %s", f, mustJSON(t, got), mustJSON(t, was))
		}
	}
	user := specRules(t, original)
	got := specRules(t, live)
	var rest, extras []gatewayv1.HTTPRouteRule
	for _, r := range got {
		if _, ok := want.extra[string(ptr.Deref(r.Name, ""))]; ok {
			extras = append(extras, r)
		} else {
			rest = append(rest, r)
		}
	}
	if len(extras) != len(want.extra) || len(rest) != len(user) {
		t.Fatalf("rules %v, want the user's %v and extra %v", ruleNames(got), ruleNames(user), want.extra)
	}
	if names := ruleNames(got); len(extras) > 0 && names[slices.Index(names, managed)-1] != string(*extras[len(extras)-1].Name) {
		t.Errorf("the extra rules are not right before the rule they narrow: %v", names)
	}
	var stub gatewayv1.HTTPRouteRule
	for i, r := range rest {
		u := user[i]
		if string(ptr.Deref(u.Name, "")) != managed {
			if mustJSON(t, r) != mustJSON(t, u) {
				t.Errorf("rule %s changed:\n%s\nwant\n%s", ptr.Deref(u.Name, ""), mustJSON(t, r), mustJSON(t, u))
			}
			continue
		}
		stub = u
		checkManaged(t, r, u, want.backends, want.mirror)
	}
	for _, e := range extras {
		if b := backends(e); !slices.Equal(b, want.extra[string(*e.Name)]) {
			t.Errorf("extra rule %s sends to %v, want %v", *e.Name, b, want.extra[string(*e.Name)])
		}
		if m := mustJSON(t, e.Matches); m != want.extraMatches {
			t.Errorf("extra rule %s matches %s, want %s", *e.Name, m, want.extraMatches)
		}
		e.Name, e.Matches, e.BackendRefs = stub.Name, stub.Matches, stub.BackendRefs
		if mustJSON(t, e) != mustJSON(t, stub) {
			t.Errorf("extra rule is not the managed rule but for name, matches and backends:\n%s\nwant\n%s", mustJSON(t, e), mustJSON(t, stub))
		}
	}
}
