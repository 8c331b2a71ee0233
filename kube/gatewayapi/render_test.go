package gatewayapi

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// jasonMatches is the match of the rule Sluice puts before "reviews" for
// the header route end-user: jason.
const jasonMatches = `[{"headers":[{"name":"end-user","type":"Exact","value":"jason"}],"path":{"type":"PathPrefix","value":"/reviews"}}]`

// The steps of a canary as plans, and what the managed rule "reviews"
// becomes at each.
var canarySteps = []struct {
	name string
	plan plan.Plan
	want step
}{
	{"stable", testPlan(plan.Route{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}}),
		step{backends: []string{stableSvc + ":9080=100"}}},
	{"canary at 0%", testPlan(weights(100, 0)), step{backends: []string{stableSvc + ":9080=100"}}},
	{"canary at 20%", testPlan(weights(80, 20)), step{backends: []string{stableSvc + ":9080=80", canarySvc + ":9080=20"}}},
	{"header route", testPlan(headerRoute("header-jason", "end-user", "jason"), weights(80, 20)), step{
		extra:        map[string][]string{"reviews-header-jason": {canarySvc + ":9080=100"}},
		extraMatches: jasonMatches,
		backends:     []string{stableSvc + ":9080=80", canarySvc + ":9080=20"}}},
	{"mirror", testPlan(func() plan.Route {
		r := weights(70, 30)
		r.Mirror = &plan.Mirror{Subset: plan.Canary, Percent: 10}
		return r
	}()), step{backends: []string{stableSvc + ":9080=70", canarySvc + ":9080=30"}, mirror: canarySvc}},
	{"promoted", testPlan(weights(0, 100)), step{backends: []string{canarySvc + ":9080=100"}}},
}

// TestRenderTouchesOnlyTheManagedRule renders each step into the user's
// route, both fresh and over the previous step's write, and compares the
// result with what the user wrote (checkRoute), and checks that the
// request sets nothing of the spec but the rules.
func TestRenderTouchesOnlyTheManagedRule(t *testing.T) {
	user := toUnstructured(t, userHTTPRoute())
	chained := user
	for _, s := range canarySteps {
		t.Run(s.name, func(t *testing.T) {
			fresh := render(t, testInput(s.plan), user)
			next := render(t, testInput(s.plan), chained)
			if got, want := mustJSON(t, next.Apply.Object["spec"]), mustJSON(t, fresh.Apply.Object["spec"]); got != want {
				t.Fatalf("rules written over the last step differ from rules written over the user's route:\n%s\n%s", got, want)
			}
			spec, _, _ := unstructured.NestedMap(fresh.Apply.Object, "spec")
			if keys := slices.Sorted(maps.Keys(spec)); !slices.Equal(keys, []string{"rules"}) {
				t.Fatalf("the apply request sets spec fields %v; Sluice owns only rules", keys)
			}
			chained = applied(t, chained, next.Apply)
			checkRoute(t, chained, user, "reviews", s.want)
		})
	}
	// Back to stable: the route is the user's but for the backendRefs.
	d := render(t, testInput(canarySteps[0].plan), chained)
	checkRoute(t, applied(t, chained, d.Apply), user, "reviews", canarySteps[0].want)
}

// checkManaged compares the managed rule with the user's: equal but for
// the backendRefs (want) and a mirror filter appended to the user's.
func checkManaged(t *testing.T, got, user gatewayv1.HTTPRouteRule, want []string, mirror string) {
	t.Helper()
	if b := backends(got); !slices.Equal(b, want) {
		t.Errorf("managed rule sends to %v, want %v", b, want)
	}
	filters := got.Filters
	if mirror != "" {
		n := len(filters) - 1
		if n < 0 || filters[n].Type != gatewayv1.HTTPRouteFilterRequestMirror || string(filters[n].RequestMirror.BackendRef.Name) != mirror {
			t.Fatalf("managed rule's filters %s end in no mirror to %s", mustJSON(t, filters), mirror)
		}
		filters = filters[:n]
	}
	if mustJSON(t, filters) != mustJSON(t, user.Filters) {
		t.Errorf("managed rule's own filters %s, want %s", mustJSON(t, filters), mustJSON(t, user.Filters))
	}
	got.BackendRefs, user.BackendRefs, got.Filters, user.Filters = nil, nil, nil, nil
	if mustJSON(t, got) != mustJSON(t, user) {
		t.Errorf("managed rule changed beyond backendRefs and filters:\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, user))
	}
}

func ruleNames(rs []gatewayv1.HTTPRouteRule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(ptr.Deref(r.Name, "")))
	}
	return out
}

// TestRenderTakesAnotherManagersRulesAsDeclared: a GitOps tool applies the
// user's route again mid-rollout, with a new filter on an unmanaged rule
// and a changed managed rule. The next render keeps both changes and puts
// the plan back; Sluice's record lets it tell its own values from theirs.
func TestRenderTakesAnotherManagersRulesAsDeclared(t *testing.T) {
	user := toUnstructured(t, userHTTPRoute())
	p := testPlan(headerRoute("header-jason", "end-user", "jason"), weights(80, 20))
	live := applied(t, user, render(t, testInput(p), user).Apply)

	edited := userHTTPRoute()
	edited.Spec.Rules[2].Filters = append(edited.Spec.Rules[2].Filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-legacy", Value: "1"}}}})
	edited.Spec.Rules[1].Timeouts.Request = ptr.To(gatewayv1.Duration("9s"))
	gitops := toUnstructured(t, edited)
	gitops.SetAnnotations(live.GetAnnotations()) // another manager leaves Sluice's annotation alone
	d := render(t, testInput(p), gitops)
	if !d.Changed {
		t.Fatal("the plan is gone from the route, yet Render sees nothing to write")
	}
	got := specRules(t, applied(t, gitops, d.Apply))
	if names := ruleNames(got); !slices.Equal(names, []string{"health", "reviews-header-jason", "reviews", "legacy"}) {
		t.Fatalf("rules %v", names)
	}
	if mustJSON(t, got[3]) != mustJSON(t, edited.Spec.Rules[2]) {
		t.Errorf("the GitOps change to rule legacy was reverted: %s", mustJSON(t, got[3]))
	}
	if *got[2].Timeouts.Request != "9s" || *got[1].Timeouts.Request != "9s" {
		t.Errorf("the GitOps change to the managed rule was lost: %s / %s", *got[2].Timeouts.Request, *got[1].Timeouts.Request)
	}
	checkManaged(t, got[2], edited.Spec.Rules[1], []string{stableSvc + ":9080=80", canarySvc + ":9080=20"}, "")

	// Written again over its own write: nothing to do.
	again := applied(t, gitops, d.Apply)
	if d := render(t, testInput(p), again); d.Changed {
		t.Error("a route that holds the plan is written again")
	}
}

func TestRenderErrors(t *testing.T) {
	p := testPlan(weights(80, 20))
	twoUnnamed := userHTTPRoute()
	twoUnnamed.Spec.Rules[0].Name, twoUnnamed.Spec.Rules[1].Name = nil, nil
	dupNames := userHTTPRoute()
	dupNames.Spec.Rules[2].Name = ptr.To(gatewayv1.SectionName("reviews"))
	redirect := userHTTPRoute()
	redirect.Spec.Rules[1].BackendRefs = nil
	redirect.Spec.Rules[1].Filters = []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestRedirect,
		RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{Hostname: ptr.To(gatewayv1.PreciseHostname("elsewhere.example.com"))}}}
	absent := testPlan(plan.Route{Name: "no-debug", Match: []plan.Match{{Headers: []plan.HeaderMatch{{Name: "x-debug", Kind: plan.HeaderAbsent}}}},
		Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}}, weights(80, 20))
	preview := testPlan(weights(100, 0))
	preview.Hosts = append(preview.Hosts, plan.Host{Name: "preview.example.com", Port: reviewsPort,
		Routes: []plan.Route{{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}}}})
	preview.Seal()
	named := func(n string) v1alpha1.GatewayRouteRef {
		return v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: n}}}
	}
	for _, tc := range []struct {
		name  string
		route *gatewayv1.HTTPRoute
		ref   v1alpha1.GatewayRouteRef
		plan  plan.Plan
		want  string
	}{
		{"no such rule", userHTTPRoute(), named("ratings"), p, `no rule named "ratings"`},
		{"several rules, none named", userHTTPRoute(), v1alpha1.GatewayRouteRef{Name: "reviews"}, p, "the route has 3 rules; name the ones"},
		{"index out of range", userHTTPRoute(), v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Index: ptr.To[int32](3)}}}, p, "no rule at index 3"},
		{"ambiguous name", dupNames, named("reviews"), p, `2 rules named "reviews"; pick one by index`},
		{"one rule twice", userHTTPRoute(), v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: "reviews"}, {Index: ptr.To[int32](1)}}}, p, "are one rule"},
		{"redirect", redirect, named("reviews"), p, "redirects"},
		{"absent header", userHTTPRoute(), named("reviews"), absent, "cannot require a header to be absent"},
		{"preview host", userHTTPRoute(), named("reviews"), preview, "preview by match instead"},
		{"unnamed by index is fine, by only is not", twoUnnamed, v1alpha1.GatewayRouteRef{Name: "reviews"}, p, "the route has 3 rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(tc.plan)
			in.Route = tc.ref
			_, err := Render(in, toUnstructured(t, tc.route))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestRenderUnnamedRuleByIndex: an unnamed rule is picked by index, and
// the rules Sluice puts before it do not shift the indexes of the next
// write.
func TestRenderUnnamedRuleByIndex(t *testing.T) {
	route := userHTTPRoute()
	route.Spec.Rules[1].Name = nil
	user := toUnstructured(t, route)
	in := testInput(testPlan(headerRoute("header-jason", "end-user", "jason"), weights(80, 20)))
	in.Route.Rules = []v1alpha1.GatewayRuleRef{{Index: ptr.To[int32](1)}}
	live := applied(t, user, render(t, in, user).Apply)
	if names := ruleNames(specRules(t, live)); !slices.Equal(names, []string{"health", "sluice-1-header-jason", "", "legacy"}) {
		t.Fatalf("rules %v", names)
	}
	if d := render(t, in, live); d.Changed {
		t.Fatalf("written again: %s", mustJSON(t, d.Apply.Object["spec"]))
	}
}

// TestRenderTwoRollouts: two Rollouts manage two rules of one route; each
// write keeps the other's rules and record.
func TestRenderTwoRollouts(t *testing.T) {
	user := toUnstructured(t, userHTTPRoute())
	reviews := testInput(testPlan(headerRoute("header-jason", "end-user", "jason"), weights(80, 20)))
	legacy := testInput(testPlan(weights(50, 50)))
	legacy.Rollout, legacy.Plan.Service = "legacy", "legacy"
	legacy.Plan.Seal()
	legacy.Route.Rules = []v1alpha1.GatewayRuleRef{{Index: ptr.To[int32](2)}}

	live := applied(t, user, render(t, reviews, user).Apply)
	live = applied(t, live, render(t, legacy, live).Apply)
	if d := render(t, reviews, live); d.Changed {
		t.Fatalf("reviews writes again after legacy's write: %s", mustJSON(t, d.Apply.Object["spec"]))
	}
	got := specRules(t, live)
	if names := ruleNames(got); !slices.Equal(names, []string{"health", "reviews-header-jason", "reviews", "legacy"}) {
		t.Fatalf("rules %v", names)
	}
	if b := backends(got[3]); !slices.Equal(b, []string{"legacy-" + stableRev + ":9080=50", "legacy-" + canaryRev + ":9080=50"}) {
		t.Errorf("legacy rule sends to %v", b)
	}
	var recs map[string]json.RawMessage
	if err := json.Unmarshal([]byte(live.GetAnnotations()[AnnotationManagedRules]), &recs); err != nil || len(recs) != 2 {
		t.Fatalf("record %v (%v), want one entry per Rollout", live.GetAnnotations()[AnnotationManagedRules], err)
	}
	// A Rollout cannot take another's rule.
	steal := legacy
	steal.Route.Rules = []v1alpha1.GatewayRuleRef{{Name: "reviews"}}
	if _, err := Render(steal, live); err == nil || !strings.Contains(err.Error(), "managed by Rollout reviews") {
		t.Fatalf("error %v, want the rule's Rollout named", err)
	}
}

// TestRenderCreatesRoute: with create, a missing route is rendered whole
// and owned; without it, a missing route is an error.
func TestRenderCreatesRoute(t *testing.T) {
	in := testInput(testPlan(weights(80, 20)))
	if _, err := Render(in, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("error %v, want not found", err)
	}
	in.Route.Create = &v1alpha1.GatewayRouteCreate{ParentRefs: []v1alpha1.GatewayParentRef{{Name: "mesh", Kind: "Service"}}, Hostnames: []string{reviewsHost1}}
	d := render(t, in, nil)
	spec, _, _ := unstructured.NestedMap(d.Apply.Object, "spec")
	want := `{"hostnames":["reviews.example.com"],"parentRefs":[{"group":"","kind":"Service","name":"mesh"}],` +
		`"rules":[{"backendRefs":[{"group":"","kind":"Service","name":"reviews-aaaa1111","port":9080,"weight":80},{"group":"","kind":"Service","name":"reviews-bbbb2222","port":9080,"weight":20}],` +
		`"matches":[{"path":{"type":"PathPrefix","value":"/"}}],"name":"reviews"}]}`
	if got := mustJSON(t, spec); got != want {
		t.Errorf("created route\n%s\nwant\n%s", got, want)
	}
	if d.Apply.GetLabels()["app.kubernetes.io/managed-by"] != "sluice" {
		t.Errorf("created route labels %v", d.Apply.GetLabels())
	}
}

func TestConjoinPath(t *testing.T) {
	p := func(t gatewayv1.PathMatchType, v string) *gatewayv1.HTTPPathMatch {
		return &gatewayv1.HTTPPathMatch{Type: &t, Value: &v}
	}
	prefix, exact, re := gatewayv1.PathMatchPathPrefix, gatewayv1.PathMatchExact, gatewayv1.PathMatchRegularExpression
	for _, tc := range []struct {
		a, b *gatewayv1.HTTPPathMatch
		want string // "" for none, "error"
	}{
		{p(prefix, "/"), p(prefix, "/api"), "PathPrefix /api"},
		{p(prefix, "/api"), p(prefix, "/"), "PathPrefix /api"},
		{p(prefix, "/api"), p(prefix, "/apiv2"), ""},
		{p(prefix, "/api"), p(exact, "/api/v2"), "Exact /api/v2"},
		{p(exact, "/api/v2"), p(prefix, "/api/"), "Exact /api/v2"},
		{p(exact, "/a"), p(exact, "/b"), ""},
		{p(re, "/a.*"), p(prefix, "/a"), "error"},
		{p(re, "/a.*"), p(re, "/a.*"), "RegularExpression /a.*"},
	} {
		got, ok, err := conjoinPath(tc.a, tc.b)
		s := ""
		switch {
		case err != nil:
			s = "error"
		case ok:
			s = string(*got.Type) + " " + *got.Value
		}
		if s != tc.want {
			t.Errorf("%s %s ∧ %s %s = %q, want %q", *tc.a.Type, *tc.a.Value, *tc.b.Type, *tc.b.Value, s, tc.want)
		}
	}
}

func TestCookiePattern(t *testing.T) {
	p, err := cookiePattern([]plan.CookieMatch{{Name: "canary", Value: "yes"}, {Name: "user", Value: "j.son"}})
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(p)
	for header, want := range map[string]bool{
		"canary=yes; user=j.son":           true,
		"user=j.son;canary=yes":            true,
		"a=1; canary=yes; b=2; user=j.son": true,
		"canary=yes":                       false,
		"xcanary=yes; user=j.son":          false,
		"canary=yess; user=j.son":          false,
		"canary=yes; user=jxson":           false,
	} {
		if re.MatchString(header) != want {
			t.Errorf("%q matches %s: %v, want %v", header, p, !want, want)
		}
	}
	if _, err := cookiePattern(make([]plan.CookieMatch, 4)); err == nil {
		t.Error("four cookies are accepted")
	}
}

// TestRelease: a Rollout that lets go of a route leaves it as declared,
// and another Rollout's rules in it as they are.
func TestRelease(t *testing.T) {
	user := toUnstructured(t, userHTTPRoute())
	reviews := testInput(testPlan(headerRoute("header-jason", "end-user", "jason"), func() plan.Route {
		r := weights(80, 20)
		r.Mirror = &plan.Mirror{Subset: plan.Canary, Percent: 10}
		return r
	}()))
	legacy := testInput(testPlan(weights(50, 50)))
	legacy.Rollout = "legacy"
	legacy.Route.Rules = []v1alpha1.GatewayRuleRef{{Name: "legacy"}}
	alone := applied(t, user, render(t, reviews, user).Apply)

	d, err := Release(HTTPRoute, "reviews", alone)
	if err != nil || d == nil {
		t.Fatalf("Release: %v, %v", d, err)
	}
	if got, want := mustJSON(t, d.Apply.Object["spec"]), mustJSON(t, user.Object["spec"].(map[string]any)["rules"]); got != `{"rules":`+want+`}` {
		t.Errorf("released rules\n%s\nwant the user's\n%s", got, want)
	}
	if len(d.Apply.GetAnnotations()) != 0 || len(d.Apply.GetLabels()) != 0 {
		t.Errorf("the release keeps Sluice's annotations %v or labels %v; applied, it would not drop them", d.Apply.GetAnnotations(), d.Apply.GetLabels())
	}
	if d, err := Release(HTTPRoute, "other", alone); d != nil || err != nil {
		t.Errorf("a Rollout with nothing in the route releases %v (%v)", d, err)
	}

	both := applied(t, alone, render(t, legacy, alone).Apply)
	d, err = Release(HTTPRoute, "reviews", both)
	if err != nil {
		t.Fatal(err)
	}
	left := applied(t, both, d.Apply)
	left.SetAnnotations(d.Apply.GetAnnotations())
	if d := render(t, legacy, left); d.Changed {
		t.Errorf("legacy's rules are not as it left them after reviews let go: %s", mustJSON(t, d.Apply.Object["spec"]))
	}
	if names := ruleNames(specRules(t, left)); !slices.Equal(names, []string{"health", "reviews", "legacy"}) {
		t.Errorf("rules %v after reviews let go", names)
	}
}

// TestRenderExtraRevision: an extra revision's match route and weight
// reach the rule as its own Service, like stable's and the canary's.
func TestRenderExtraRevision(t *testing.T) {
	p := testPlan(
		plan.Route{Name: "revision-jason", Match: []plan.Match{{Headers: []plan.HeaderMatch{{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}}}},
			Destinations: []plan.Destination{{Subset: "jason", Weight: 100}}},
		plan.Route{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 40}, {Subset: plan.Canary, Weight: 50}, {Subset: "jason", Weight: 10}}},
	)
	p.Subsets = append(p.Subsets, plan.Subset{Name: "jason", Revision: "cccc3333"})
	p.Seal()
	user := toUnstructured(t, userHTTPRoute())
	live := applied(t, user, render(t, testInput(p), user).Apply)
	checkRoute(t, live, user, "reviews", step{
		backends:     []string{stableSvc + ":9080=40", canarySvc + ":9080=50", "reviews-cccc3333:9080=10"},
		extra:        map[string][]string{"reviews-revision-jason": {"reviews-cccc3333:9080=100"}},
		extraMatches: jasonMatches,
	})
}

func TestParentRefsDefaults(t *testing.T) {
	got := mustJSON(t, parentRefs([]v1alpha1.GatewayParentRef{
		{Name: "public", Namespace: "infra", SectionName: "https"},
		{Kind: "Gateway", Name: "internal"},
		{Kind: "Service", Name: "ratings", Port: ptr.To[int32](50051)},
		{Group: "example.com", Kind: "Mesh", Name: "m"},
	}))
	want := `[{"group":"gateway.networking.k8s.io","kind":"Gateway","name":"public","namespace":"infra","sectionName":"https"},` +
		`{"group":"gateway.networking.k8s.io","kind":"Gateway","name":"internal"},` +
		`{"group":"","kind":"Service","name":"ratings","port":50051},` +
		`{"group":"example.com","kind":"Mesh","name":"m"}]`
	if got != want {
		t.Errorf("parentRefs\n%s\nwant\n%s", got, want)
	}
}
