package istio

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

func mustCompile(t testing.TB, re string) *regexp.Regexp {
	t.Helper()
	r, err := regexp.Compile(re)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var jason = headerRoute("header-jason", plan.HeaderMatch{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"})

// TestMergeIntoDeclared merges plans into VirtualServices as Git declares
// them: only the managed routes change.
func TestMergeIntoDeclared(t *testing.T) {
	tests := []struct {
		name     string
		declared string
		routes   []string
		plan     plan.Plan
		want     string // the whole spec
	}{{
		name:     "bookinfo reviews: the managed route splits, debug stays",
		declared: bookinfoVS,
		routes:   []string{"reviews"},
		plan:     newPlan([]string{"reviews", fqdn}, jason, plan.Route{Name: "primary", Destinations: split(10), Mirror: &plan.Mirror{Subset: plan.Canary, Percent: 20}}),
		want: `
hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: stable}}]
  timeout: 3s
- name: reviews-header-jason
  match: [{headers: {end-user: {exact: jason}}}]
  route: [{destination: {host: reviews, subset: canary}, weight: 100}]
- name: reviews
  route:
  - {destination: {host: reviews, subset: stable}, weight: 90}
  - {destination: {host: reviews, subset: canary}, weight: 10}
  mirror: {host: reviews, subset: canary}
  mirrorPercentage: {value: 20}
`,
	}, {
		name: "the unnamed route (routes empty); other fields as declared",
		declared: `
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [mesh, bookinfo-gateway]
  exportTo: ["."]
  http:
  - name: ratings-probe
    match: [{uri: {exact: /probe}}]
    directResponse: {status: 200}
  - route:
    - destination: {host: reviews, port: {number: 9080}}
  tcp:
  - route: [{destination: {host: reviews, port: {number: 9081}}}]
`,
		plan: newPlan([]string{"reviews"}, jason, route("primary", split(50)...)),
		want: `
hosts: [reviews]
gateways: [mesh, bookinfo-gateway]
exportTo: ["."]
http:
- name: ratings-probe
  match: [{uri: {exact: /probe}}]
  directResponse: {status: 200}
- name: sluice-header-jason
  match: [{headers: {end-user: {exact: jason}}}]
  route: [{destination: {host: reviews, subset: canary, port: {number: 9080}}, weight: 100}]
- name: sluice-primary
  route:
  - {destination: {host: reviews, subset: stable, port: {number: 9080}}, weight: 50}
  - {destination: {host: reviews, subset: canary, port: {number: 9080}}, weight: 50}
tcp:
- route: [{destination: {host: reviews, port: {number: 9081}}}]
`,
	}, {
		name: "the route's own match, rewrite and timeout stay; plan matches narrow it",
		declared: `
metadata: {name: productpage}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - name: productpage
    match:
    - uri: {prefix: /productpage}
    - uri: {prefix: /static}
    rewrite: {authority: productpage}
    timeout: 10s
    retries: {attempts: 1}
    route: [{destination: {host: productpage}}]
`,
		routes: []string{"productpage"},
		plan: newPlan([]string{"bookinfo.example.com"},
			withURI(headerRoute("preview", plan.HeaderMatch{Name: "x-preview", Kind: plan.HeaderExact, Value: "true"}), "/static/v2"),
			plan.Route{Name: "primary", Destinations: split(0), Policy: &plan.Policy{Retries: &plan.Retries{Attempts: 2, RetryOn: "5xx"}}}),
		want: `
hosts: [bookinfo.example.com]
gateways: [bookinfo-gateway]
http:
- name: productpage-preview
  match:
  - uri: {prefix: /static/v2}
    headers: {x-preview: {exact: "true"}}
  rewrite: {authority: productpage}
  timeout: 10s
  retries: {attempts: 1}
  route: [{destination: {host: productpage, subset: canary}, weight: 100}]
- name: productpage
  match:
  - uri: {prefix: /productpage}
  - uri: {prefix: /static}
  rewrite: {authority: productpage}
  timeout: 10s
  retries: {attempts: 2, retryOn: 5xx}
  route:
  - {destination: {host: productpage, subset: stable}, weight: 100}
  - {destination: {host: productpage, subset: canary}}
`,
	}, {
		name: "no HTTP routes declared: Sluice appends the managed one",
		declared: `
metadata: {name: reviews}
spec:
  hosts: [reviews]
`,
		plan: canaryAt(5, "reviews"),
		want: `
hosts: [reviews]
http:
- name: sluice-primary
  route:
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: stable}, weight: 95}
  - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: canary}, weight: 5}
`,
	}, {
		name: "declared mirrors list: the plan's mirror joins it",
		declared: `
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    mirrors:
    - destination: {host: shadow}
      percentage: {value: 1}
`,
		plan: newPlan([]string{"reviews"}, plan.Route{Name: "primary", Destinations: split(0), Mirror: &plan.Mirror{Subset: plan.Canary, Percent: 10}}),
		want: `
hosts: [reviews]
http:
- name: sluice-primary
  route:
  - {destination: {host: reviews, subset: stable}, weight: 100}
  - {destination: {host: reviews, subset: canary}}
  mirrors:
  - {destination: {host: shadow}, percentage: {value: 1}}
  - {destination: {host: reviews, subset: canary}, percentage: {value: 10}}
`,
	}, {
		name: "two managed routes each get the plan",
		declared: `
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews}}]
  - name: legacy
    match: [{uri: {prefix: /legacy}}]
    route: [{destination: {host: legacy}}]
  - name: web
    route: [{destination: {host: reviews}}]
`,
		routes: []string{"web", "api"},
		plan:   canaryAt(20, "reviews"),
		want: `
hosts: [reviews]
http:
- name: api
  match: [{uri: {prefix: /api}}]
  route:
  - {destination: {host: reviews, subset: stable}, weight: 80}
  - {destination: {host: reviews, subset: canary}, weight: 20}
- name: legacy
  match: [{uri: {prefix: /legacy}}]
  route: [{destination: {host: legacy}}]
- name: web
  route:
  - {destination: {host: reviews, subset: stable}, weight: 80}
  - {destination: {host: reviews, subset: canary}, weight: 20}
`,
	}, {
		name: "a plan route no request of the managed route can reach is left out",
		declared: `
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /reviews}}]
    route: [{destination: {host: reviews}}]
`,
		plan: newPlan([]string{"reviews"}, withURI(route("dark", dest(plan.Canary, 100)), "/other"), route("primary", split(0)...)),
		want: `
hosts: [reviews]
http:
- name: sluice-primary
  match: [{uri: {exact: /reviews}}]
  route:
  - {destination: {host: reviews, subset: stable}, weight: 100}
  - {destination: {host: reviews, subset: canary}}
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			declared := vsYAML(t, tt.declared)
			before := proto.Clone(&declared.Spec)
			d, err := Render(Input{Plan: tt.plan, VirtualService: declared, Routes: tt.routes}, Live{})
			if err != nil {
				t.Fatal(err)
			}
			equalSpec(t, &d.VirtualService.Spec, tt.want)
			if !proto.Equal(before, &declared.Spec) {
				t.Error("Render changed its input")
			}
			// Every route Git declares and Sluice does not manage is
			// written byte for byte as declared.
			managed := map[string]bool{}
			for _, r := range tt.routes {
				managed[r] = true
			}
			for _, hr := range declared.Spec.Http {
				if hr.Name == "" || managed[hr.Name] {
					continue
				}
				got := findRoute(d.VirtualService.Spec.Http, hr.Name)
				if got == nil || routeJSON(t, got) != routeJSON(t, hr) {
					t.Errorf("unmanaged route %q changed:\n got %v\nwant %s", hr.Name, got, routeJSON(t, hr))
				}
			}
		})
	}
}

func withURI(r plan.Route, prefix string) plan.Route {
	for i := range r.Match {
		r.Match[i].URI = &plan.URIMatch{Prefix: true, Value: prefix}
	}
	if len(r.Match) == 0 {
		r.Match = []plan.Match{{URI: &plan.URIMatch{Prefix: true, Value: prefix}}}
	}
	return r
}

// written is what the API server holds after Sluice wrote d: the rendered
// objects plus a resourceVersion.
func written(d *Desired, rv string) Live {
	vs := d.VirtualService.DeepCopy()
	vs.ResourceVersion = rv
	dr := d.DestinationRule.DeepCopy()
	dr.ResourceVersion = rv
	return Live{VirtualService: vs, DestinationRule: dr}
}

// TestRebaseOnLive covers the three-way rule: while Git's declaration is
// unchanged, other writers' edits of what Sluice does not manage survive;
// when Git changes, Git wins.
func TestRebaseOnLive(t *testing.T) {
	in := func(p plan.Plan) Input {
		return Input{Plan: p, VirtualService: vsYAML(t, bookinfoVS), Routes: []string{"reviews"}, DestinationRule: drYAML(t, bookinfoDR)}
	}
	first, err := Render(in(canaryAt(10, "reviews")), Live{})
	if err != nil {
		t.Fatal(err)
	}
	if first.VirtualService.ResourceVersion != "" {
		t.Error("a write based on Git's declaration carries a resourceVersion precondition")
	}

	// Someone else edits the debug route, adds a route, and edits the v1
	// subset; Sluice then moves to 50%.
	live := written(first, "7")
	debug := findRoute(live.VirtualService.Spec.Http, "debug")
	debug.Timeout.Seconds = 9
	live.VirtualService.Spec.Http = append(live.VirtualService.Spec.Http, &networking.HTTPRoute{Name: "added", Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings"}}}})
	live.DestinationRule.Spec.Subsets[0].Labels = map[string]string{"version": "v1-patched"}

	next, err := Render(in(canaryAt(50, "reviews")), live)
	if err != nil {
		t.Fatal(err)
	}
	equalSpec(t, &next.VirtualService.Spec, `
hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: stable}}]
  timeout: 9s
- name: reviews
  route:
  - {destination: {host: reviews, subset: stable}, weight: 50}
  - {destination: {host: reviews, subset: canary}, weight: 50}
- name: added
  route: [{destination: {host: ratings}}]
`)
	if next.VirtualService.ResourceVersion != "7" || next.DestinationRule.ResourceVersion != "7" {
		t.Errorf("a write based on the live object must be conditional on its resourceVersion; got %q, %q",
			next.VirtualService.ResourceVersion, next.DestinationRule.ResourceVersion)
	}
	if got := next.DestinationRule.Spec.Subsets[0].Labels["version"]; got != "v1-patched" {
		t.Errorf("edited subset v1 reverted to %q", got)
	}

	// Git changes the debug route: Git's version wins, the added route is
	// gone, the weights stay the plan's.
	changed := in(canaryAt(50, "reviews"))
	findRoute(changed.VirtualService.Spec.Http, "debug").Timeout.Seconds = 4
	fromGit, err := Render(changed, live)
	if err != nil {
		t.Fatal(err)
	}
	if got := findRoute(fromGit.VirtualService.Spec.Http, "debug").Timeout.Seconds; got != 4 {
		t.Errorf("Git's change to the debug route did not go through: timeout %ds", got)
	}
	if findRoute(fromGit.VirtualService.Spec.Http, "added") != nil || fromGit.VirtualService.ResourceVersion != "" {
		t.Error("after a Git change the live route list is not the base")
	}
	if w := findRoute(fromGit.VirtualService.Spec.Http, "reviews").Route[1].Weight; w != 50 {
		t.Errorf("canary weight %d, want 50", w)
	}

	// Managed routes in the live object that do not fit the record (someone
	// removed them) make Git's declaration the base again.
	broken := written(first, "8")
	broken.VirtualService.Spec.Http = broken.VirtualService.Spec.Http[:1]
	again, err := Render(in(canaryAt(50, "reviews")), broken)
	if err != nil {
		t.Fatal(err)
	}
	if findRoute(again.VirtualService.Spec.Http, "reviews") == nil || again.VirtualService.ResourceVersion != "" {
		t.Errorf("managed route not restored from Git: %s", toYAML(t, &again.VirtualService.Spec))
	}
}

func TestDestinationRule(t *testing.T) {
	t.Run("merged into the declared one", func(t *testing.T) {
		d, err := Render(Input{Plan: canaryAt(10, "reviews"), DestinationRule: drYAML(t, bookinfoDR), RevisionLabel: "pod-template-hash"}, Live{})
		if err != nil {
			t.Fatal(err)
		}
		equalSpec(t, &d.DestinationRule.Spec, `
host: reviews
trafficPolicy:
  loadBalancer: {simple: LEAST_REQUEST}
subsets:
- name: v1
  labels: {version: v1}
- name: stable
  labels: {pod-template-hash: rev-a}
  trafficPolicy:
    connectionPool:
      http: {http1MaxPendingRequests: 10}
- name: canary
  labels: {pod-template-hash: rev-b}
`)
		if d.DestinationRule.Name != "reviews" {
			t.Errorf("name %q", d.DestinationRule.Name)
		}
	})
	t.Run("owned, outside a rollout", func(t *testing.T) {
		d, err := Render(Input{Plan: stableOnly("reviews"), DestinationRuleName: "reviews-sluice"}, Live{})
		if err != nil {
			t.Fatal(err)
		}
		equalSpec(t, &d.DestinationRule.Spec, `
host: reviews.bookinfo.svc.cluster.local
subsets:
- {name: stable, labels: {sluice.dev/revision: rev-a}}
- {name: canary, labels: {sluice.dev/revision: rev-a}}
`)
		if d.DestinationRule.Name != "reviews-sluice" {
			t.Errorf("name %q", d.DestinationRule.Name)
		}
	})
	t.Run("owned, host as the declared route names it", func(t *testing.T) {
		d, err := Render(Input{Plan: canaryAt(10, "reviews"), VirtualService: vsYAML(t, bookinfoVS), Routes: []string{"reviews"}}, Live{})
		if err != nil {
			t.Fatal(err)
		}
		if h := d.DestinationRule.Spec.Host; h != "reviews" {
			t.Errorf("host %q, want the declared destination host reviews", h)
		}
	})
}

// TestPreview: blue/green preview hosts route differently from the service
// hosts, so they get a VirtualService of their own, gone after the preview.
func TestPreview(t *testing.T) {
	primary := plan.Route{Name: "primary", Destinations: split(0), Policy: &plan.Policy{Timeout: 5 * time.Second}}
	preview := headerRoute("preview", plan.HeaderMatch{Name: "x-preview", Kind: plan.HeaderExact, Value: "true"})
	p := plan.Plan{
		Service: "reviews", Namespace: ns,
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: revA}, {Name: plan.Canary, Revision: revB}},
		Hosts: []plan.Host{
			{Name: "reviews", Routes: []plan.Route{preview, primary}},
			{Name: "bookinfo.example.com", Routes: []plan.Route{preview, primary}},
			{Name: "preview.example.com", Routes: []plan.Route{route("primary", dest(plan.Canary, 100))}},
		},
	}
	p.Seal()
	declared := vsYAML(t, `
metadata: {name: reviews}
spec:
  hosts: [reviews, bookinfo.example.com]
  gateways: [mesh, bookinfo-gateway]
  http:
  - route: [{destination: {host: reviews}}]
`)
	d, err := Render(Input{Plan: p, VirtualService: declared}, Live{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Preview == nil || d.Preview.Name != "reviews-preview" || d.PreviewName != "reviews-preview" {
		t.Fatalf("preview %v, name %q", d.Preview, d.PreviewName)
	}
	equalSpec(t, &d.Preview.Spec, `
hosts: [preview.example.com]
gateways: [mesh, bookinfo-gateway]
http:
- name: primary
  route: [{destination: {host: reviews, subset: canary}, weight: 100}]
`)
	if d.Preview.Labels[LabelManagedBy] != "sluice" {
		t.Errorf("preview VirtualService not marked as Sluice's: %v", d.Preview.Labels)
	}
	if n := len(d.VirtualService.Spec.Http); n != 2 {
		t.Errorf("main VirtualService has %d routes, want preview match + primary", n)
	}

	// After promotion the plan has no preview host: no preview object, and
	// its name is reported for deletion.
	after, err := Render(Input{Plan: canaryAt(100, "reviews", "bookinfo.example.com"), VirtualService: declared}, Live{Preview: d.Preview})
	if err != nil {
		t.Fatal(err)
	}
	if after.Preview != nil || after.PreviewName != "reviews-preview" {
		t.Errorf("preview after promotion: %v %q", after.Preview, after.PreviewName)
	}

	// A preview name taken by someone else's VirtualService is not taken over.
	foreign := &networkingv1.VirtualService{}
	foreign.Name = "reviews-preview"
	if _, err := Render(Input{Plan: p, VirtualService: declared}, Live{Preview: foreign}); err == nil {
		t.Error("took over a foreign reviews-preview")
	}
}

// TestExampleCanary renders a step of examples/canary into the Istio
// objects that example declares.
func TestExampleCanary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "canary", "istio.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("%d documents in the example, want VirtualService and DestinationRule", len(docs))
	}
	// The example Rollout's hosts; its first steps route jason and mirror.
	p := newPlan([]string{"reviews", fqdn}, jason, plan.Route{Name: "primary", Destinations: split(5), Mirror: &plan.Mirror{Subset: plan.Canary, Percent: 20}})
	d, err := Render(Input{Plan: p, VirtualService: vsYAML(t, docs[0]), DestinationRule: drYAML(t, docs[1])}, Live{})
	if err != nil {
		t.Fatal(err)
	}
	equalSpec(t, &d.VirtualService.Spec, `
hosts: [reviews]
http:
- name: sluice-header-jason
  match: [{headers: {end-user: {exact: jason}}}]
  route: [{destination: {host: reviews, subset: canary}, weight: 100}]
- name: sluice-primary
  route:
  - {destination: {host: reviews, subset: stable}, weight: 95}
  - {destination: {host: reviews, subset: canary}, weight: 5}
  mirror: {host: reviews, subset: canary}
  mirrorPercentage: {value: 20}
`)
	equalSpec(t, &d.DestinationRule.Spec, `
host: reviews
subsets:
- {name: stable, labels: {sluice.dev/revision: rev-a}}
- {name: canary, labels: {sluice.dev/revision: rev-b}}
`)
	if d.Preview != nil {
		t.Error("the FQDN host is an alias of reviews, not a preview host")
	}
}
