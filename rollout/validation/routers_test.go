package validation

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestRouters(t *testing.T) {
	t.Parallel()
	with := func(r *v1alpha1.Rollout, rs ...v1alpha1.Router) *v1alpha1.Rollout {
		r.Spec.Service.Routers = rs
		return r
	}
	route := func(name string, rules ...v1alpha1.GatewayRuleRef) *v1alpha1.GatewayRouteRef {
		return &v1alpha1.GatewayRouteRef{Name: name, Rules: rules}
	}
	idx := func(i int32) v1alpha1.GatewayRuleRef { return v1alpha1.GatewayRuleRef{Index: &i} }
	named := func(n string) v1alpha1.GatewayRuleRef { return v1alpha1.GatewayRuleRef{Name: n} }
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"ingress HTTPRoute and the mesh's GRPCRoute", with(canary(),
			v1alpha1.Router{HTTPRoute: route("reviews-ingress", named("main"), idx(2))},
			v1alpha1.Router{GRPCRoute: route("reviews-mesh")},
			v1alpha1.Router{Istio: &v1alpha1.IstioRouter{}}), nil},
		{"no router: replicas", replicasCanary(), nil},
		{"created route", with(canary(), v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "r",
			Create: &v1alpha1.GatewayRouteCreate{ParentRefs: []v1alpha1.GatewayParentRef{{Name: "gw"}}, Hostnames: []string{"reviews.example.com"}}}}), nil},
		{"empty and double routers", with(canary(), v1alpha1.Router{}, v1alpha1.Router{Istio: &v1alpha1.IstioRouter{}, Replicas: &v1alpha1.ReplicasRouter{}}), []string{
			"spec.service.routers[0]: Required value: " + msgOneRouter,
			"spec.service.routers[1].replicas: Forbidden: " + msgOneRouter,
		}},
		{"replicas with others, a route twice", with(canary(),
			v1alpha1.Router{Replicas: &v1alpha1.ReplicasRouter{}},
			v1alpha1.Router{HTTPRoute: route("r")}, v1alpha1.Router{HTTPRoute: route("r")}), []string{
			`spec.service.routers[2]: Duplicate value: "httpRoute/r"`,
			"spec.service.routers: Invalid value: 3: replicas means no router",
		}},
		{"rule refs", with(canary(), v1alpha1.Router{HTTPRoute: route("Bad_Name", v1alpha1.GatewayRuleRef{}, named("a"), named("a"), idx(-1))}), []string{
			`spec.service.routers[0].httpRoute.name: Invalid value: "Bad_Name"`,
			"spec.service.routers[0].httpRoute.rules[0].name: Required value: exactly one of name or index must be set",
			`spec.service.routers[0].httpRoute.rules[2].name: Duplicate value: "a"`,
			"spec.service.routers[0].httpRoute.rules[3].index: Invalid value: -1",
		}},
		{"standalone mode", with(standaloneCanary(), v1alpha1.Router{Istio: &v1alpha1.IstioRouter{}}), []string{
			"spec.service.routers: Forbidden: routers write Kubernetes routing objects in controller mode",
		}},
		{"created route without parents", with(canary(), v1alpha1.Router{GRPCRoute: &v1alpha1.GatewayRouteRef{Name: "r", Create: &v1alpha1.GatewayRouteCreate{}}}), []string{
			"spec.service.routers[0].grpcRoute.create.parentRefs: Required value",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, e := range ValidateRollout(c.r) {
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Fatalf("errors:\n got  %q\n want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("error %d: %q, want it to start with %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestGatewayLimits(t *testing.T) {
	t.Parallel()
	gw := func(r *v1alpha1.Rollout) *v1alpha1.Rollout {
		r.Spec.Service.Routers = []v1alpha1.Router{{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "reviews"}}}
		return r
	}
	absent := false
	cookie := func(n string) v1alpha1.CookieMatch { return v1alpha1.CookieMatch{Name: n, Value: "1"} }
	steps := func(r *v1alpha1.Rollout) []v1alpha1.CanaryStep { return r.Spec.Strategy.Canary.Steps }
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"what a route carries", gw(canary()), nil},
		{"absent header, pseudo-header, four cookies", func() *v1alpha1.Rollout {
			r := gw(canary())
			m := &steps(r)[3].SetHeaderRoute.Match[0]
			m.Headers = append(m.Headers, v1alpha1.HeaderMatch{Name: "x-old", Present: &absent}, v1alpha1.HeaderMatch{Name: ":authority", Exact: new("a")})
			m.Cookies = []v1alpha1.CookieMatch{cookie("a"), cookie("b"), cookie("c"), cookie("d")}
			return r
		}(), []string{
			"spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[1].present: Invalid value: false: a Gateway API route cannot require a header to be absent",
			`spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[2].name: Invalid value: ":authority": a Gateway API route cannot match a pseudo-header`,
			"spec.strategy.canary.steps[3].setHeaderRoute.match[0].cookies: Too many: 4: must have at most 3 items",
		}},
		{"preview hosts", func() *v1alpha1.Rollout {
			r := gw(blueGreen())
			r.Spec.Strategy.BlueGreen.Preview.Hosts = []string{"preview.reviews"}
			return r
		}(), []string{"spec.strategy.blueGreen.preview.hosts: Forbidden: a Gateway API route has one set of rules"}},
		{"the same through Istio", func() *v1alpha1.Rollout {
			r := canary()
			steps(r)[3].SetHeaderRoute.Match[0].Headers = append(steps(r)[3].SetHeaderRoute.Match[0].Headers, v1alpha1.HeaderMatch{Name: "x-old", Present: &absent})
			return r
		}(), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, e := range ValidateRollout(c.r) {
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Fatalf("errors:\n got  %q\n want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("error %d: %q, want it to start with %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestGatewayWarnings(t *testing.T) {
	t.Parallel()
	r := canary()
	r.Spec.Strategy.Canary.Steps[4] = v1alpha1.CanaryStep{SetWeight: new(int32(50))}
	r.Spec.Service.Routers = []v1alpha1.Router{{GRPCRoute: &v1alpha1.GatewayRouteRef{Name: "ratings"}}}
	r.Spec.Service.Policy = &v1alpha1.RoutePolicy{Timeout: dur("2s")}
	r.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Header: &v1alpha1.HeaderAffinity{Name: "x-user"}}
	var got []string
	for _, w := range RolloutWarnings(r) {
		got = append(got, w.Field+": "+w.Message)
	}
	want := []string{
		"spec.service.policy: " + GatewayPolicyWarning,
		"spec.service.sessionAffinity: " + GatewayAffinityWarning,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant (no Istio warning: no Istio router):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
