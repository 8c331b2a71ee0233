package istio

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/rollout/plan"
)

const (
	ns   = "bookinfo"
	revA = "rev-a" // stable
	revB = "rev-b" // canary
	fqdn = "reviews.bookinfo.svc.cluster.local"
)

// bookinfoVS is Bookinfo's reviews VirtualService as Git declares it, with
// one route Sluice manages ("reviews") and one it does not ("debug").
const bookinfoVS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels: {app: reviews}
  annotations: {team: books}
spec:
  hosts: [reviews]
  http:
  - name: debug
    match:
    - headers:
        x-debug: {exact: "1"}
    route:
    - destination: {host: reviews, subset: stable}
    timeout: 3s
  - name: reviews
    route:
    - destination: {host: reviews, subset: stable}
`

const bookinfoDR = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: stable
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        http: {http1MaxPendingRequests: 10}
  - name: canary
`

func decode[T any](t testing.TB, y string) *T {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decoding %T: %v", out, err)
	}
	return out
}

func vsYAML(t testing.TB, y string) *networkingv1.VirtualService {
	return decode[networkingv1.VirtualService](t, y)
}

func drYAML(t testing.TB, y string) *networkingv1.DestinationRule {
	return decode[networkingv1.DestinationRule](t, y)
}

// toYAML shows a spec the way a user reads it.
func toYAML(t testing.TB, m json.Marshaler) string {
	t.Helper()
	b, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(y)
}

// equalSpec compares a rendered spec with the expected one written as YAML.
func equalSpec[T any, PT interface {
	*T
	proto.Message
	json.Marshaler
}](t testing.TB, got PT, want string) {
	t.Helper()
	w := PT(decode[T](t, want))
	if !proto.Equal(got, w) {
		t.Errorf("spec differs\n--- got\n%s--- want\n%s", toYAML(t, got), toYAML(t, w))
	}
}

// httpYAML wraps route YAML into a VirtualService spec with hosts.
func httpYAML(hosts, routes string) string {
	return "hosts: " + hosts + "\nhttp:\n" + strings.TrimLeft(routes, "\n")
}

func route(name string, dests ...plan.Destination) plan.Route {
	return plan.Route{Name: name, Destinations: dests}
}

func dest(subset string, weight int32) plan.Destination {
	return plan.Destination{Subset: subset, Weight: weight}
}

func split(canary int32) []plan.Destination {
	return []plan.Destination{dest(plan.Stable, 100-canary), dest(plan.Canary, canary)}
}

func headerRoute(name string, h plan.HeaderMatch) plan.Route {
	r := route(name, dest(plan.Canary, 100))
	r.Match = []plan.Match{{Headers: []plan.HeaderMatch{h}}}
	return r
}

// newPlan is a sealed plan for the reviews service, canary subset included
// unless the routes use the stable subset only.
func newPlan(hosts []string, routes ...plan.Route) plan.Plan {
	p := plan.Plan{Service: "reviews", Namespace: ns, Subsets: []plan.Subset{{Name: plan.Stable, Revision: revA}}}
	for _, r := range routes {
		for _, d := range r.Destinations {
			if d.Subset == plan.Canary && len(p.Subsets) == 1 {
				p.Subsets = append(p.Subsets, plan.Subset{Name: plan.Canary, Revision: revB})
			}
		}
	}
	for _, h := range hosts {
		p.Hosts = append(p.Hosts, plan.Host{Name: h, Port: 9080, Routes: routes})
	}
	p.Seal()
	return p
}

func stableOnly(hosts ...string) plan.Plan {
	return newPlan(hosts, route("primary", dest(plan.Stable, 100)))
}

func canaryAt(weight int32, hosts ...string) plan.Plan {
	return newPlan(hosts, route("primary", split(weight)...))
}

// routeJSON is the protobuf JSON of one route: what "byte for byte" means
// for a route.
func routeJSON(t testing.TB, hr *networking.HTTPRoute) string {
	t.Helper()
	b, err := hr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func findRoute(http []*networking.HTTPRoute, name string) *networking.HTTPRoute {
	for _, hr := range http {
		if hr.Name == name {
			return hr
		}
	}
	return nil
}
