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
