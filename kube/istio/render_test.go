package istio

import (
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

type featureCase struct {
	name   string
	routes []plan.Route
	want   string // spec.http
}

// featureCases exercise every feature of the plan, rendered into a
// VirtualService Sluice owns (nothing declared in Git).
func featureCases() []featureCase {
	withPolicy := func(r plan.Route, p *plan.Policy) plan.Route { r.Policy = p; return r }
	withMirror := func(r plan.Route, m *plan.Mirror) plan.Route { r.Mirror = m; return r }
	withMatch := func(r plan.Route, m ...plan.Match) plan.Route { r.Match = m; return r }
	withAffinity := func(r plan.Route, a *plan.Affinity) plan.Route { r.Affinity = a; return r }
	canary := route("x", dest(plan.Canary, 100))

	return []featureCase{{
		name:   "stable only",
		routes: []plan.Route{route("primary", dest(plan.Stable, 100))},
		want: `
- name: primary
  route:
  - destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}
    weight: 100
`,
	}, {
		name:   "weights; the canary at 0 keeps its place",
		routes: []plan.Route{route("primary", split(0)...)},
		want: `
- name: primary
  route:
  - destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}
    weight: 100
  - destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}
`,
	}, {
		name: "header routes of every kind come first, in plan order",
		routes: []plan.Route{
			headerRoute("header-exact", plan.HeaderMatch{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}),
			headerRoute("header-prefix", plan.HeaderMatch{Name: "x-group", Kind: plan.HeaderPrefix, Value: "beta-"}),
			headerRoute("header-regex", plan.HeaderMatch{Name: "x-id", Kind: plan.HeaderRegex, Value: "[0-9]+"}),
			headerRoute("header-present", plan.HeaderMatch{Name: "x-canary", Kind: plan.HeaderPresent}),
			headerRoute("header-absent", plan.HeaderMatch{Name: "x-stable", Kind: plan.HeaderAbsent}),
			route("primary", split(10)...),
		},
		want: `
- name: header-exact
  match: [{headers: {end-user: {exact: jason}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: header-prefix
  match: [{headers: {x-group: {prefix: beta-}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: header-regex
  match: [{headers: {x-id: {regex: "[0-9]+"}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: header-present
  match: [{headers: {x-canary: {}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: header-absent
  match: [{withoutHeaders: {x-stable: {}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 90}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 10}
`,
	}, {
		name: "alternatives, conjunctions and URIs",
		routes: []plan.Route{
			withMatch(route("dark", dest(plan.Canary, 100)),
				plan.Match{URI: &plan.URIMatch{Prefix: true, Value: "/api"}, Headers: []plan.HeaderMatch{{Name: "X-Beta", Kind: plan.HeaderExact, Value: "1"}}},
				plan.Match{URI: &plan.URIMatch{Value: "/health"}}),
			route("primary", split(0)...),
		},
		want: `
- name: dark
  match:
  - {uri: {prefix: /api}, headers: {x-beta: {exact: "1"}}}
  - {uri: {exact: /health}}
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 100}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}}
`,
	}, {
		name: "cookie match is a regex on the cookie header",
		routes: []plan.Route{
			withMatch(canary, plan.Match{Cookies: []plan.CookieMatch{{Name: "user", Value: "jason"}}}),
			route("primary", split(0)...),
		},
		want: `
- name: x
  match: [{headers: {cookie: {regex: '^(?:.*;)?\s*user=jason(?:;.*)?$'}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 100}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}}
`,
	}, {
		name:   "mirror",
		routes: []plan.Route{withMirror(route("primary", split(0)...), &plan.Mirror{Subset: plan.Canary, Percent: 20})},
		want: `
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 100}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}}
  mirror: {host: reviews.bookinfo.svc.cluster.local, subset: canary}
  mirrorPercentage: {value: 20}
`,
	}, {
		name: "timeout, retries, abort with an HTTP status, delay",
		routes: []plan.Route{withPolicy(route("primary", dest(plan.Stable, 100)), &plan.Policy{
			Timeout: 2 * time.Second,
			Retries: &plan.Retries{Attempts: 3, PerTryTimeout: 500 * time.Millisecond, RetryOn: "5xx,reset"},
			Fault: &plan.Fault{
				Abort: &plan.FaultAbort{HTTPStatus: 503, Percent: 5},
				Delay: &plan.FaultDelay{Delay: 1500 * time.Millisecond, Percent: 10},
			},
		})},
		want: `
- name: primary
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 100}]
  timeout: 2s
  retries: {attempts: 3, perTryTimeout: 0.500s, retryOn: "5xx,reset"}
  fault:
    abort: {httpStatus: 503, percentage: {value: 5}}
    delay: {fixedDelay: 1.500s, percentage: {value: 10}}
`,
	}, {
		name: "abort with a gRPC status takes the code's name",
		routes: []plan.Route{withPolicy(route("primary", dest(plan.Stable, 100)), &plan.Policy{
			Fault: &plan.Fault{Abort: &plan.FaultAbort{GRPCStatus: 14, Percent: 100}},
		})},
		want: `
- name: primary
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 100}]
  fault:
    abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
`,
	}, {
		name: "cookie affinity: the canary sets it, a route before the weights matches it",
		routes: []plan.Route{
			withAffinity(route("primary", dest(plan.Stable, 75), dest(plan.Canary, 25)), &plan.Affinity{Cookie: "sluice-canary", CookieTTL: 90 * time.Minute}),
		},
		want: `
- name: affinity
  match: [{headers: {cookie: {regex: '^(?:.*;)?\s*sluice-canary=rev-b(?:;.*)?$'}}}]
  route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 100}]
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 75}
  - destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}
    weight: 25
    headers: {response: {add: {set-cookie: "sluice-canary=rev-b; Path=/; Max-Age=5400"}}}
`,
	}, {
		name: "header affinity has no marker: the weights alone",
		routes: []plan.Route{
			withAffinity(route("primary", dest(plan.Stable, 50), dest(plan.Canary, 50)), &plan.Affinity{Header: "x-session"}),
		},
		want: `
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 50}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 50}
`,
	}, {
		name: "cookie affinity at 0%: nothing to mark",
		routes: []plan.Route{
			withAffinity(route("primary", dest(plan.Stable, 100), dest(plan.Canary, 0)), &plan.Affinity{Cookie: "sluice-canary"}),
		},
		want: `
- name: primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 100}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 0}
`,
	}}
}

func TestRenderPlanFeatures(t *testing.T) {
	for _, tt := range featureCases() {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Render(Input{Plan: newPlan([]string{"reviews"}, tt.routes...)}, Live{})
			if err != nil {
				t.Fatal(err)
			}
			equalSpec(t, &d.VirtualService.Spec, httpYAML("[reviews]", tt.want))
			if d.Preview != nil {
				t.Errorf("preview VirtualService for a plan without preview hosts")
			}
		})
	}
}

func TestCookieRegex(t *testing.T) {
	one, _ := cookieRegex([]plan.CookieMatch{{Name: "user", Value: "jason"}})
	two, _ := cookieRegex([]plan.CookieMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}})
	tests := []struct {
		re, header string
		want       bool
	}{
		{one, "user=jason", true},
		{one, "a=1; user=jason", true},
		{one, "a=1;user=jason; b=2", true},
		{one, "user=jasonx", false},
		{one, "xuser=jason", false},
		{one, "a=user=jason", false},
		{one, "user=jaso", false},
		{two, "a=1; b=2", true},
		{two, "b=2; c=3; a=1", true},
		{two, "a=1", false},
		{two, "a=1; b=22", false},
	}
	for _, tt := range tests {
		if got := mustCompile(t, tt.re).MatchString(tt.header); got != tt.want {
			t.Errorf("%s on %q = %v, want %v", tt.re, tt.header, got, tt.want)
		}
	}
	if _, err := cookieRegex(make([]plan.CookieMatch, maxCookies+1)); err == nil {
		t.Errorf("%d cookies: no error", maxCookies+1)
	}
}

// TestRenderIsIdempotent: the same input gives the same objects, down to
// the bytes, so re-applying an unchanged plan changes nothing.
func TestRenderIsIdempotent(t *testing.T) {
	p := newPlan([]string{"reviews"},
		headerRoute("header-jason", plan.HeaderMatch{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}),
		plan.Route{Name: "primary", Destinations: split(30), Mirror: &plan.Mirror{Subset: plan.Canary, Percent: 5}})
	in := func() Input {
		return Input{Plan: p, VirtualService: vsYAML(t, bookinfoVS), Routes: []string{"reviews"}, DestinationRule: drYAML(t, bookinfoDR),
			Annotations: map[string]string{"sluice.dev/git-commit": "abc"}}
	}
	a, err := Render(in(), Live{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Render(in(), Live{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{
		{toYAML(t, &a.VirtualService.Spec), toYAML(t, &b.VirtualService.Spec)},
		{toYAML(t, &a.DestinationRule.Spec), toYAML(t, &b.DestinationRule.Spec)},
	} {
		if pair[0] != pair[1] {
			t.Errorf("two renders differ:\n%s\n%s", pair[0], pair[1])
		}
	}
	if a.VirtualService.Annotations[AnnotationManagedRoutes] != b.VirtualService.Annotations[AnnotationManagedRoutes] ||
		a.VirtualService.Annotations[AnnotationDeclaredHash] != b.VirtualService.Annotations[AnnotationDeclaredHash] {
		t.Errorf("annotations differ: %v vs %v", a.VirtualService.Annotations, b.VirtualService.Annotations)
	}

	// Feeding the output back as the live object (what the API server
	// stores after the write) renders the same again.
	c, err := Render(in(), Live{VirtualService: a.VirtualService, DestinationRule: a.DestinationRule})
	if err != nil {
		t.Fatal(err)
	}
	if x, y := toYAML(t, &a.VirtualService.Spec), toYAML(t, &c.VirtualService.Spec); x != y {
		t.Errorf("render from live differs:\n%s\n%s", x, y)
	}
}

func TestRenderMetadata(t *testing.T) {
	owner := &metav1.OwnerReference{APIVersion: "sluice.dev/v1alpha1", Kind: "Rollout", Name: "reviews", UID: "u1", Controller: new(true)}
	prov := map[string]string{"sluice.dev/git-commit": "0123abcd", "sluice.dev/git-path": "apps/reviews.yaml"}
	p := canaryAt(10, "reviews")

	declared, err := Render(Input{Plan: p, VirtualService: vsYAML(t, bookinfoVS), Routes: []string{"reviews"},
		DestinationRule: drYAML(t, bookinfoDR), Annotations: prov, Owner: owner}, Live{})
	if err != nil {
		t.Fatal(err)
	}
	vs := declared.VirtualService
	if vs.Labels["app"] != "reviews" || vs.Annotations["team"] != "books" {
		t.Errorf("declared metadata lost: %v %v", vs.Labels, vs.Annotations)
	}
	if _, ok := vs.Labels[LabelManagedBy]; ok || len(vs.OwnerReferences) != 0 {
		t.Errorf("a declared VirtualService is Git's, not owned by the Rollout: %v %v", vs.Labels, vs.OwnerReferences)
	}
	for _, m := range []metav1.Object{vs, declared.DestinationRule} {
		a := m.GetAnnotations()
		if a["sluice.dev/git-commit"] != "0123abcd" || a["sluice.dev/git-path"] != "apps/reviews.yaml" || a[AnnotationPlanVersion] != p.Version {
			t.Errorf("%s: annotations %v lack provenance or plan version", m.GetName(), a)
		}
	}

	owned, err := Render(Input{Plan: p, Annotations: prov, Owner: owner}, Live{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []metav1.Object{owned.VirtualService, owned.DestinationRule} {
		if m.GetLabels()[LabelManagedBy] != "sluice" || len(m.GetOwnerReferences()) != 1 || m.GetNamespace() != ns || m.GetName() != "reviews" {
			t.Errorf("owned %s: labels %v owners %v ns %q", m.GetName(), m.GetLabels(), m.GetOwnerReferences(), m.GetNamespace())
		}
		if m.GetAnnotations()["sluice.dev/git-commit"] != "0123abcd" {
			t.Errorf("owned %s: no provenance", m.GetName())
		}
	}
}

func TestRenderErrors(t *testing.T) {
	withHosts := func(hosts ...string) func(*Input) {
		return func(in *Input) { in.VirtualService.Spec.Hosts = hosts }
	}
	tests := []struct {
		name   string
		mutate func(*Input)
		live   func(*Live)
		want   string
	}{{
		name:   "managed route missing",
		mutate: func(in *Input) { in.Routes = []string{"nope"} },
		want:   `no HTTP route named "nope"`,
	}, {
		name:   "no unnamed route to manage",
		mutate: func(in *Input) { in.Routes = nil },
		want:   "no unnamed HTTP route",
	}, {
		name: "two unnamed routes",
		mutate: func(in *Input) {
			in.Routes = nil
			in.VirtualService.Spec.Http = []*networking.HTTPRoute{{}, {}}
		},
		want: "more than one unnamed HTTP route",
	}, {
		name:   "hosts outside the plan",
		mutate: withHosts("ratings"),
		want:   "name none of the plan's hosts",
	}, {
		name:   "a redirect cannot be managed",
		mutate: func(in *Input) { in.VirtualService.Spec.Http[1].Redirect = &networking.HTTPRedirect{Uri: "/v2"} },
		want:   "can only manage a route that forwards",
	}, {
		name:   "a declared route takes a name Sluice needs",
		mutate: func(in *Input) { in.VirtualService.Spec.Http[0].Name = "reviews-header-jason" },
		want:   `route name "reviews-header-jason" is used`,
	}, {
		name:   "declared in another namespace",
		mutate: func(in *Input) { in.VirtualService.Namespace = "other" },
		want:   `declared in namespace "other"`,
	}, {
		name:   "invalid plan",
		mutate: func(in *Input) { in.Plan.Hosts[0].Routes[1].Destinations[0].Weight = 1 },
		want:   "invalid plan",
	}, {
		name:   "will not take over a VirtualService someone else wrote",
		mutate: func(in *Input) { in.VirtualService = nil },
		live:   func(l *Live) { l.VirtualService = vsYAML(t, bookinfoVS) },
		want:   "was not created by Sluice",
	}, {
		name: "plan match conflicts with the route's own match on a header",
		mutate: func(in *Input) {
			in.VirtualService.Spec.Http[1].Match = []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"end-user": exact("mike")}}}
		},
		want: `header "end-user" is matched both`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{
				Plan: newPlan([]string{"reviews"},
					headerRoute("header-jason", plan.HeaderMatch{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}),
					route("primary", split(10)...)),
				VirtualService: vsYAML(t, bookinfoVS),
				Routes:         []string{"reviews"},
			}
			tt.mutate(&in)
			var live Live
			if tt.live != nil {
				tt.live(&live)
			}
			_, err := Render(in, live)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
