package xds

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/sluicehq/sluice/rollout/plan"
)

// envoyVHost returns the virtual host of host in Envoy's route
// configuration for port 9080.
func envoyVHost(t *testing.T, r *Resources, host string) *routev3.VirtualHost {
	t.Helper()
	for _, rc := range r.Envoy.Routes {
		if rc.GetName() != "9080" {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == host {
				return vh
			}
		}
	}
	t.Fatalf("envoy: no virtual host %q in route configuration 9080", host)
	return nil
}

// grpcVHost returns the virtual host inlined in gRPC's API listener.
func grpcVHost(t *testing.T, r *Resources, listener string) *routev3.VirtualHost {
	t.Helper()
	hcm := grpcHCM(t, r, listener)
	vhs := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 {
		t.Fatalf("grpc listener %q: %d virtual hosts, want 1", listener, len(vhs))
	}
	return vhs[0]
}

func grpcHCM(t *testing.T, r *Resources, listener string) *hcmv3.HttpConnectionManager {
	t.Helper()
	i := slices.IndexFunc(r.GRPC.Listeners, func(l *listenerv3.Listener) bool { return l.GetName() == listener })
	if i < 0 {
		t.Fatalf("grpc: no listener %q", listener)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	must(t, r.GRPC.Listeners[i].GetApiListener().GetApiListener().UnmarshalTo(hcm))
	return hcm
}

func routeNamed(t *testing.T, vh *routev3.VirtualHost, name string) *routev3.Route {
	t.Helper()
	for _, r := range vh.GetRoutes() {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("virtual host %q: no route %q", vh.GetName(), name)
	return nil
}

func clusterNamed(t *testing.T, r *GroupResources, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range r.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

func endpointsNamed(t *testing.T, r *GroupResources, name string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	for _, c := range r.Endpoints {
		if c.GetClusterName() == name {
			return c
		}
	}
	t.Fatalf("no load assignment %q", name)
	return nil
}

// weights renders a route's weighted clusters as "cluster=weight" pairs.
func weights(r *routev3.Route) []string {
	var out []string
	for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
		out = append(out, c.GetName()+"="+strconv.FormatUint(uint64(c.GetWeight().GetValue()), 10))
	}
	return out
}

func faultOf(t *testing.T, r *routev3.Route) *faultv3.HTTPFault {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()[wellknown.Fault]
	if !ok {
		t.Fatalf("route %q: no fault config", r.GetName())
	}
	f := &faultv3.HTTPFault{}
	must(t, a.UnmarshalTo(f))
	return f
}

// bothGroups runs check on the route named name of host in Envoy and gRPC.
func bothGroups(t *testing.T, r *Resources, host, name string, check func(t *testing.T, g Group, rt *routev3.Route)) {
	t.Helper()
	check(t, GroupEnvoy, routeNamed(t, envoyVHost(t, r, host), name))
	check(t, GroupGRPC, routeNamed(t, grpcVHost(t, r, host), name))
}

func TestTranslateFeatures(t *testing.T) {
	t.Parallel()
	bookinfo := []string{"reviews", "ratings"}
	tests := []struct {
		name  string
		plans []plan.Plan
		check func(t *testing.T, r *Resources)
	}{{
		name:  "95/5 weights across two hosts of one service",
		plans: []plan.Plan{canaryPlan("reviews", 5, []string{"reviews", "reviews.example.com"})},
		check: func(t *testing.T, r *Resources) {
			for _, host := range []string{"reviews", "reviews.example.com"} {
				bothGroups(t, r, host, "primary", func(t *testing.T, g Group, rt *routev3.Route) {
					if got, want := weights(rt), []string{"reviews|v1=95", "reviews|v2=5"}; !slices.Equal(got, want) {
						t.Errorf("%s %s: weights %v, want %v", g, host, got, want)
					}
					if rt.GetMatch().GetPrefix() != "/" {
						t.Errorf("%s: catch-all route matches %v", g, rt.GetMatch())
					}
				})
				if got := envoyVHost(t, r, host).GetDomains(); !slices.Equal(got, []string{host, host + ":9080"}) {
					t.Errorf("envoy domains %v", got)
				}
			}
			if n := len(r.Envoy.Listeners); n != 1 || r.Envoy.Listeners[0].GetName() != "127.0.0.1_9080" {
				t.Errorf("envoy listeners: %d, first %q; want one 127.0.0.1_9080", n, r.Envoy.Listeners[0].GetName())
			}
			var names []string
			for _, l := range r.GRPC.Listeners {
				names = append(names, l.GetName())
			}
			if want := []string{"reviews", "reviews.example.com", "reviews.example.com:9080", "reviews:9080"}; !slices.Equal(names, want) {
				t.Errorf("grpc listeners %v, want %v", names, want)
			}
			if len(r.GRPC.Routes) != 0 {
				t.Errorf("grpc has %d RDS resources; routes must be inline", len(r.GRPC.Routes))
			}
		},
	}, {
		name:  "two services share the port's listener and route configuration",
		plans: []plan.Plan{canaryPlan("reviews", 5, bookinfo[:1]), canaryPlan("ratings", 20, bookinfo[1:])},
		check: func(t *testing.T, r *Resources) {
			if len(r.Envoy.Listeners) != 1 || len(r.Envoy.Routes) != 1 || len(r.Envoy.Routes[0].GetVirtualHosts()) != 2 {
				t.Fatalf("envoy: %d listeners, %d route configs; want 1 and 1 with 2 virtual hosts", len(r.Envoy.Listeners), len(r.Envoy.Routes))
			}
			if got := weights(routeNamed(t, envoyVHost(t, r, "ratings"), "primary")); !slices.Equal(got, []string{"ratings|v1=80", "ratings|v2=20"}) {
				t.Errorf("ratings weights %v", got)
			}
			if len(r.Envoy.Clusters) != 4 || len(r.Envoy.Endpoints) != 4 {
				t.Errorf("envoy: %d clusters, %d load assignments; want 4 and 4", len(r.Envoy.Clusters), len(r.Envoy.Endpoints))
			}
		},
	}, {
		name:  "header exact match to the canary",
		plans: []plan.Plan{canaryPlan("reviews", 0, bookinfo[:1], toCanary("header-jason", header("End-User", plan.HeaderExact, "jason")))},
		check: func(t *testing.T, r *Resources) {
			bothGroups(t, r, "reviews", "header-jason", func(t *testing.T, g Group, rt *routev3.Route) {
				h := rt.GetMatch().GetHeaders()
				if len(h) != 1 || h[0].GetName() != "end-user" || h[0].GetStringMatch().GetExact() != "jason" {
					t.Errorf("%s: header matchers %v, want end-user exact jason (name lower-cased)", g, h)
				}
				if got := weights(rt); !slices.Equal(got, []string{"reviews|v2=100"}) {
					t.Errorf("%s: weights %v", g, got)
				}
			})
		},
	}, {
		name: "header prefix, regex, present and absent",
		plans: []plan.Plan{canaryPlan("reviews", 0, bookinfo[:1], toCanary("h", plan.Match{Headers: []plan.HeaderMatch{
			{Name: "x-prefix", Kind: plan.HeaderPrefix, Value: "beta-"},
			{Name: "x-regex", Kind: plan.HeaderRegex, Value: "v[0-9]+"},
			{Name: "x-present", Kind: plan.HeaderPresent},
			{Name: "x-absent", Kind: plan.HeaderAbsent},
		}}))},
		check: func(t *testing.T, r *Resources) {
			bothGroups(t, r, "reviews", "h", func(t *testing.T, g Group, rt *routev3.Route) {
				h := rt.GetMatch().GetHeaders()
				if len(h) != 4 {
					t.Fatalf("%s: %d header matchers", g, len(h))
				}
				if h[0].GetStringMatch().GetPrefix() != "beta-" {
					t.Errorf("%s: prefix matcher %v", g, h[0])
				}
				if h[1].GetStringMatch().GetSafeRegex().GetRegex() != "v[0-9]+" {
					t.Errorf("%s: regex matcher %v", g, h[1])
				}
				if !h[2].GetPresentMatch() || h[2].GetInvertMatch() {
					t.Errorf("%s: present matcher %v", g, h[2])
				}
				if !h[3].GetPresentMatch() || !h[3].GetInvertMatch() {
					t.Errorf("%s: absent matcher %v, want present+invert", g, h[3])
				}
			})
		},
	}, {
		name: "URI prefix and exact, with alternatives",
		plans: []plan.Plan{canaryPlan("reviews", 0, bookinfo[:1], toCanary("uri",
			plan.Match{URI: &plan.URIMatch{Prefix: true, Value: "/ratings"}},
			plan.Match{URI: &plan.URIMatch{Value: "/reviews/0"}},
		))},
		check: func(t *testing.T, r *Resources) {
			bothGroups(t, r, "reviews", "uri.0", func(t *testing.T, g Group, rt *routev3.Route) {
				if rt.GetMatch().GetPrefix() != "/ratings" {
					t.Errorf("%s: %v, want prefix /ratings", g, rt.GetMatch())
				}
			})
			bothGroups(t, r, "reviews", "uri.1", func(t *testing.T, g Group, rt *routev3.Route) {
				if rt.GetMatch().GetPath() != "/reviews/0" {
					t.Errorf("%s: %v, want path /reviews/0", g, rt.GetMatch())
				}
			})
		},
	}, {
		name: "cookie match is a full-match regex on the cookie header",
		plans: []plan.Plan{canaryPlan("reviews", 10, bookinfo[:1], toCanary("affinity",
			plan.Match{Cookies: []plan.CookieMatch{{Name: "sluice-canary", Value: "v2.1"}}}))},
		check: func(t *testing.T, r *Resources) {
			bothGroups(t, r, "reviews", "affinity", func(t *testing.T, g Group, rt *routev3.Route) {
				h := rt.GetMatch().GetHeaders()
				if len(h) != 1 || h[0].GetName() != "cookie" {
					t.Fatalf("%s: %v, want one cookie matcher", g, h)
				}
				re := regexp.MustCompile("^(?:" + h[0].GetStringMatch().GetSafeRegex().GetRegex() + ")$")
				for header, want := range map[string]bool{
					"sluice-canary=v2.1":                 true,
					"a=b; sluice-canary=v2.1; c=d":       true,
					"a=b;sluice-canary=v2.1":             true,
					"sluice-canary=v2x1":                 false, // the dot is literal
					"sluice-canary=v2.10":                false,
					"xsluice-canary=v2.1":                false,
					"a=sluice-canary=v2.1":               false,
					"sluice-canary=v1; other=v2.1; z=00": false,
				} {
					if got := re.MatchString(header); got != want {
						t.Errorf("%s: cookie %q matched %v, want %v", g, header, got, want)
					}
				}
			})
		},
	}, {
		name: "fault abort 100% HTTP 500 and fixed delay 2s",
		plans: []plan.Plan{canaryPlan("reviews", 0, bookinfo[:1], plan.Route{
			Name: "fault", Match: []plan.Match{header("x-fault", plan.HeaderExact, "1")},
			Destinations: split(0),
			Policy: &plan.Policy{Fault: &plan.Fault{
				Abort: &plan.FaultAbort{HTTPStatus: 500, Percent: 100},
				Delay: &plan.FaultDelay{Delay: 2 * time.Second, Percent: 50},
			}},
		})},
		check: func(t *testing.T, r *Resources) {
			bothGroups(t, r, "reviews", "fault", func(t *testing.T, g Group, rt *routev3.Route) {
				f := faultOf(t, rt)
				if f.GetAbort().GetHttpStatus() != 500 || f.GetAbort().GetPercentage().GetNumerator() != 100 {
					t.Errorf("%s: abort %v, want 500 at 100%%", g, f.GetAbort())
				}
				if f.GetDelay().GetFixedDelay().AsDuration() != 2*time.Second || f.GetDelay().GetPercentage().GetNumerator() != 50 {
					t.Errorf("%s: delay %v, want 2s at 50%%", g, f.GetDelay())
				}
			})
			bothGroups(t, r, "reviews", "primary", func(t *testing.T, g Group, rt *routev3.Route) {
				if len(rt.GetTypedPerFilterConfig()) != 0 {
					t.Errorf("%s: primary route carries a fault", g)
				}
			})
			// The fault filter must be in the chain, before the router.
			hcm := grpcHCM(t, r, "reviews")
			var names []string
			for _, f := range hcm.GetHttpFilters() {
				names = append(names, f.GetName())
			}
			if !slices.Equal(names, []string{wellknown.Fault, wellknown.Router}) {
				t.Errorf("grpc http filters %v", names)
			}
		},
	}, {
		name: "fault abort with a gRPC status",
		plans: []plan.Plan{canaryPlan("reviews", 0, bookinfo[:1], plan.Route{
			Name: "fault", Match: []plan.Match{header("x-fault", plan.HeaderPresent, "")}, Destinations: split(0),
			Policy: &plan.Policy{Fault: &plan.Fault{Abort: &plan.FaultAbort{GRPCStatus: 14, Percent: 10}}},
		})},
		check: func(t *testing.T, r *Resources) {
			bothGroups(t, r, "reviews", "fault", func(t *testing.T, g Group, rt *routev3.Route) {
				if a := faultOf(t, rt).GetAbort(); a.GetGrpcStatus() != 14 || a.GetPercentage().GetNumerator() != 10 {
					t.Errorf("%s: abort %v", g, a)
				}
			})
		},
	}, {
		name: "timeout 10s and retries",
		plans: []plan.Plan{edit(canaryPlan("reviews", 5, bookinfo[:1]), func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Policy = &plan.Policy{
				Timeout: 10 * time.Second,
				Retries: &plan.Retries{Attempts: 3, PerTryTimeout: 2 * time.Second},
			}
		})},
		check: func(t *testing.T, r *Resources) {
			a := routeNamed(t, envoyVHost(t, r, "reviews"), "primary").GetRoute()
			if a.GetTimeout().AsDuration() != 10*time.Second {
				t.Errorf("envoy timeout %v, want 10s", a.GetTimeout())
			}
			if rp := a.GetRetryPolicy(); rp.GetNumRetries().GetValue() != 3 || rp.GetPerTryTimeout().AsDuration() != 2*time.Second ||
				rp.GetRetryOn() != DefaultRetryOn || !slices.Equal(rp.GetRetriableStatusCodes(), []uint32{503}) {
				t.Errorf("envoy retry policy %v", rp)
			}
			g := routeNamed(t, grpcVHost(t, r, "reviews"), "primary").GetRoute()
			if g.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration() != 10*time.Second || g.GetTimeout() != nil {
				t.Errorf("grpc: max stream duration %v, timeout %v; want 10s and none", g.GetMaxStreamDuration(), g.GetTimeout())
			}
			if rp := g.GetRetryPolicy(); rp.GetNumRetries().GetValue() != 3 || rp.GetPerTryTimeout() != nil {
				t.Errorf("grpc retry policy %v, want 3 retries, no per-try timeout", rp)
			}
		},
	}, {
		name: "no timeout disables Envoy's 15s default; zero attempts means no retry policy",
		plans: []plan.Plan{edit(canaryPlan("reviews", 5, bookinfo[:1]), func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Policy = &plan.Policy{Retries: &plan.Retries{Attempts: 0}}
		})},
		check: func(t *testing.T, r *Resources) {
			a := routeNamed(t, envoyVHost(t, r, "reviews"), "primary").GetRoute()
			if a.GetTimeout() == nil || a.GetTimeout().AsDuration() != 0 || a.GetRetryPolicy() != nil {
				t.Errorf("envoy timeout %v, retry %v; want explicit 0s and none", a.GetTimeout(), a.GetRetryPolicy())
			}
		},
	}, {
		name: "mirror is Envoy only",
		plans: []plan.Plan{edit(canaryPlan("reviews", 0, bookinfo[:1]), func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Mirror = &plan.Mirror{Subset: plan.Canary, Percent: 20}
		})},
		check: func(t *testing.T, r *Resources) {
			m := routeNamed(t, envoyVHost(t, r, "reviews"), "primary").GetRoute().GetRequestMirrorPolicies()
			if len(m) != 1 || m[0].GetCluster() != "reviews|v2" || m[0].GetRuntimeFraction().GetDefaultValue().GetNumerator() != 20 {
				t.Errorf("envoy mirror %v, want reviews|v2 at 20%%", m)
			}
			if m := routeNamed(t, grpcVHost(t, r, "reviews"), "primary").GetRoute().GetRequestMirrorPolicies(); len(m) != 0 {
				t.Errorf("grpc mirror %v, want none", m)
			}
		},
	}, {
		name: "abort with both statuses: Envoy gets the HTTP one, gRPC the gRPC one",
		plans: []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"}, plan.Route{
			Name: "f", Match: []plan.Match{header("x", plan.HeaderPresent, "")}, Destinations: split(5),
			Policy: &plan.Policy{Fault: &plan.Fault{Abort: &plan.FaultAbort{HTTPStatus: 500, GRPCStatus: 14, Percent: 100}}},
		})},
		check: func(t *testing.T, r *Resources) {
			if got := faultOf(t, routeNamed(t, envoyVHost(t, r, "reviews"), "f")).GetAbort().GetHttpStatus(); got != 500 {
				t.Errorf("envoy abort http status %d, want 500", got)
			}
			if got := faultOf(t, routeNamed(t, grpcVHost(t, r, "reviews"), "f")).GetAbort(); got.GetGrpcStatus() != 14 || got.GetHttpStatus() != 0 {
				t.Errorf("grpc abort %v, want grpc status 14 only", got)
			}
		},
	}, {
		name: "session affinity: one ring-hash cluster over both revisions, weighted in the split's ratio",
		plans: []plan.Plan{edit(canaryPlan("reviews", 10, bookinfo[:1]), func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Affinity = &plan.Affinity{Header: "X-MyVal"}
		})},
		check: func(t *testing.T, r *Resources) {
			for _, g := range groups {
				res := r.Group(g)
				c := clusterNamed(t, res, "reviews|@affinity")
				rh := c.GetRingHashLbConfig()
				if c.GetLbPolicy() != clusterv3.Cluster_RING_HASH || rh.GetMinimumRingSize().GetValue() != ringSize || rh.GetMaximumRingSize().GetValue() != ringSize {
					t.Errorf("%s: affinity cluster %v, want RING_HASH with a %d ring", g, c, ringSize)
				}
				// 10% of 4096 is 409.6: the canary gets 410 points, stable
				// 3686 dealt over its two endpoints in address order.
				want := map[string]uint32{"10.0.0.1:8080": 1843, "10.0.0.2:8080": 1843, "10.0.0.3:8080": 410}
				got := map[string]uint32{}
				var sum uint32
				for _, e := range endpointsNamed(t, res, "reviews|@affinity").GetEndpoints()[0].GetLbEndpoints() {
					a := e.GetEndpoint().GetAddress().GetSocketAddress()
					got[fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPortValue())] = e.GetLoadBalancingWeight().GetValue()
					sum += e.GetLoadBalancingWeight().GetValue()
				}
				if !maps.Equal(got, want) || sum != ringSize {
					t.Errorf("%s: affinity endpoint weights %v (sum %d), want %v", g, got, sum, want)
				}
			}
			for _, vh := range []*routev3.VirtualHost{envoyVHost(t, r, "reviews"), grpcVHost(t, r, "reviews")} {
				ra := routeNamed(t, vh, "primary").GetRoute()
				cs := ra.GetWeightedClusters().GetClusters()
				if len(cs) != 1 || cs[0].GetName() != "reviews|@affinity" || cs[0].GetWeight().GetValue() != 100 {
					t.Errorf("primary clusters %v, want only the affinity ring", cs)
				}
				if hp := ra.GetHashPolicy(); len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-myval" {
					t.Errorf("hash policy %v, want header x-myval", hp)
				}
			}
			warm := routeNamed(t, grpcVHost(t, r, "reviews"), KeepWarmRoute).GetRoute().GetWeightedClusters().GetClusters()
			var names []string
			for _, c := range warm {
				names = append(names, c.GetName())
			}
			if !slices.Equal(names, []string{"reviews|v1", "reviews|v2", "reviews|@affinity"}) {
				t.Errorf("gRPC keep-warm clusters %v, want both revisions and the ring", names)
			}
		},
	}, {
		name: "session affinity at 0%: weighted clusters as usual, the ring built and kept warm",
		plans: []plan.Plan{edit(canaryPlan("reviews", 0, bookinfo[:1]), func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Affinity = &plan.Affinity{Cookie: "session", CookieTTL: time.Hour}
		})},
		check: func(t *testing.T, r *Resources) {
			ra := routeNamed(t, envoyVHost(t, r, "reviews"), "primary").GetRoute()
			if len(ra.GetHashPolicy()) != 0 || len(ra.GetWeightedClusters().GetClusters()) != 2 {
				t.Errorf("primary at 0%%: %v, want the two revisions and no hash policy", ra)
			}
			lb := endpointsNamed(t, r.GRPC, "reviews|@affinity").GetEndpoints()[0].GetLbEndpoints()
			if len(lb) != 2 {
				t.Errorf("ring endpoints at 0%%: %v, want stable's two", lb)
			}
			if !slices.ContainsFunc(routeNamed(t, grpcVHost(t, r, "reviews"), KeepWarmRoute).GetRoute().GetWeightedClusters().GetClusters(),
				func(c *routev3.WeightedCluster_ClusterWeight) bool { return c.GetName() == "reviews|@affinity" }) {
				t.Error("ring not kept warm for gRPC at 0%")
			}
		},
	}, {
		name: "session affinity by cookie: Envoy creates the cookie",
		plans: []plan.Plan{edit(canaryPlan("reviews", 50, bookinfo[:1]), func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Affinity = &plan.Affinity{Cookie: "session", CookieTTL: time.Hour}
		})},
		check: func(t *testing.T, r *Resources) {
			hp := routeNamed(t, envoyVHost(t, r, "reviews"), "primary").GetRoute().GetHashPolicy()
			if len(hp) != 1 || hp[0].GetCookie().GetName() != "session" || hp[0].GetCookie().GetTtl().AsDuration() != time.Hour || hp[0].GetCookie().GetPath() != "/" {
				t.Errorf("hash policy %v, want cookie session, ttl 1h, path /", hp)
			}
		},
	}, {
		name: "endpoints: sorted, deduplicated, one weighted locality; an unknown revision has none",
		plans: []plan.Plan{edit(canaryPlan("reviews", 5, bookinfo[:1]), func(p *plan.Plan) {
			p.Subsets[1].Revision = "v3"
		})},
		check: func(t *testing.T, r *Resources) {
			for _, g := range groups {
				eps := r.Group(g).Endpoints
				if len(eps) != 2 || eps[0].GetClusterName() != "reviews|v1" || eps[1].GetClusterName() != "reviews|v3" {
					t.Fatalf("%s: load assignments %v", g, eps)
				}
				loc := eps[0].GetEndpoints()
				if len(loc) != 1 || loc[0].GetLoadBalancingWeight().GetValue() != 1 || len(loc[0].GetLbEndpoints()) != 2 {
					t.Errorf("%s: stable locality %v, want weight 1 with 2 endpoints", g, loc)
				}
				if got := loc[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress(); got.GetAddress() != "10.0.0.1" || got.GetPortValue() != 8080 {
					t.Errorf("%s: first endpoint %v, want 10.0.0.1:8080", g, got)
				}
				if len(eps[1].GetEndpoints()) != 0 {
					t.Errorf("%s: unknown revision has endpoints %v", g, eps[1].GetEndpoints())
				}
			}
		},
	}, {
		name:  "gRPC keeps every cluster referenced through a route that never matches",
		plans: []plan.Plan{canaryPlan("reviews", 0, bookinfo[:1], toCanary("header-jason", header("end-user", plan.HeaderExact, "jason")))},
		check: func(t *testing.T, r *Resources) {
			routes := grpcVHost(t, r, "reviews").GetRoutes()
			var names []string
			for _, rt := range routes {
				names = append(names, rt.GetName())
			}
			if want := []string{"header-jason", KeepWarmRoute, "primary"}; !slices.Equal(names, want) {
				t.Fatalf("grpc routes %v, want %v", names, want)
			}
			kw := routes[1]
			if got := weights(kw); !slices.Equal(got, []string{"reviews|v2=1", "reviews|v1=1"}) {
				t.Errorf("keep-warm weights %v", got)
			}
			h := kw.GetMatch().GetHeaders()
			if len(h) != 2 || h[0].GetName() != h[1].GetName() || !h[0].GetPresentMatch() || !h[1].GetPresentMatch() ||
				h[0].GetInvertMatch() == h[1].GetInvertMatch() {
				t.Errorf("keep-warm matchers %v, want one header both present and absent", h)
			}
			for _, rt := range envoyVHost(t, r, "reviews").GetRoutes() {
				if rt.GetName() == KeepWarmRoute {
					t.Error("envoy has the keep-warm route; its clusters come from CDS")
				}
			}
		},
	}, {
		name:  "stable-only plan has one cluster",
		plans: []plan.Plan{stableOnly("reviews", bookinfo[:1])},
		check: func(t *testing.T, r *Resources) {
			if len(r.Envoy.Clusters) != 1 || r.Envoy.Clusters[0].GetName() != "reviews|v1" {
				t.Errorf("clusters %v", r.Envoy.Clusters)
			}
			if got := weights(routeNamed(t, envoyVHost(t, r, "reviews"), "primary")); !slices.Equal(got, []string{"reviews|v1=100"}) {
				t.Errorf("weights %v", got)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eps := NewStatic()
			must(t, eps.Set("", "reviews", revStable, "10.0.0.2:8080", "10.0.0.1:8080", "10.0.0.1:8080"))
			must(t, eps.Set("", "reviews", revCanary, "10.0.0.3:8080"))
			must(t, eps.Set("", "ratings", revStable, "10.0.1.1:8080"))
			must(t, eps.Set("", "ratings", revCanary, "10.0.1.2:8080"))
			r, err := Translate(tc.plans, eps, TranslateOptions{})
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			for _, g := range groups {
				for _, res := range allResources(r.Group(g)) {
					if err := res.(validator).Validate(); err != nil {
						t.Errorf("%s: %T invalid: %v", g, res, err)
					}
				}
				if _, _, err := buildSnapshot(g, r.Group(g)); err != nil {
					t.Errorf("%s snapshot: %v", g, err)
				}
			}
			tc.check(t, r)
		})
	}
}

func stableOnly(service string, hosts []string) plan.Plan {
	p := plan.Plan{Service: service, Subsets: []plan.Subset{{Name: plan.Stable, Revision: revStable}}}
	for _, h := range hosts {
		p.Hosts = append(p.Hosts, plan.Host{Name: h, Port: 9080, Routes: []plan.Route{
			{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}},
		}})
	}
	p.Seal()
	return p
}

func TestTranslateRejects(t *testing.T) {
	t.Parallel()
	base := canaryPlan("reviews", 5, []string{"reviews"})
	unsealed := base
	unsealed.Hosts = []plan.Host{{Name: "reviews", Port: 9080, Routes: []plan.Route{{Name: "primary", Destinations: split(50)}}}}
	tests := []struct {
		name  string
		plans []plan.Plan
		want  string
	}{
		{"unsealed plan", []plan.Plan{unsealed}, "call Seal"},
		{"host routed by two services", []plan.Plan{base, canaryPlan("ratings", 5, []string{"reviews"})}, "routed by both"},
		{"two plans for one service", []plan.Plan{base, base}, "two plans"},
		{"host with a port", []plan.Plan{canaryPlan("reviews", 5, []string{"reviews:9080"})}, "without port"},
		{"invalid header regex", []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"}, toCanary("re", header("x", plan.HeaderRegex, "(")))}, "regex"},
		{"uri without slash", []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"}, toCanary("u", plan.Match{URI: &plan.URIMatch{Value: "api"}}))}, "must start with /"},
		{"abort HTTP status out of range", []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"}, plan.Route{
			Name: "f", Match: []plan.Match{header("x", plan.HeaderPresent, "")}, Destinations: split(5),
			Policy: &plan.Policy{Fault: &plan.Fault{Abort: &plan.FaultAbort{HTTPStatus: 99, Percent: 1}}},
		})}, "HttpStatus"},
		{"two affinity splits", []plan.Plan{edit(base, func(p *plan.Plan) {
			p.Hosts[0].Routes[0].Affinity = &plan.Affinity{Header: "x"}
			p.Hosts[0].Routes = append([]plan.Route{{Name: "other", Match: []plan.Match{header("y", plan.HeaderPresent, "")},
				Destinations: split(20), Affinity: &plan.Affinity{Header: "x"}}}, p.Hosts[0].Routes...)
		})}, "different weights"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Translate(tc.plans, NewStatic(), TranslateOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Translate error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// versionsOf translates and snapshots plans, returning each group's type
// versions.
func versionsOf(t *testing.T, eps EndpointSource, plans ...plan.Plan) map[Group][numKinds]string {
	t.Helper()
	r, err := Translate(plans, eps, TranslateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[Group][numKinds]string{}
	for _, g := range groups {
		_, gen, err := buildSnapshot(g, r.Group(g))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range gen.versions {
			if v == "" || v == "1" {
				t.Fatalf("%s %s version %q is not a content hash", g, kindName[k], v)
			}
		}
		out[g] = gen.versions
	}
	return out
}

func TestVersionStability(t *testing.T) {
	t.Parallel()
	eps := staticFor(t, "reviews", "ratings")
	base := []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"}), canaryPlan("ratings", 5, []string{"ratings"})}
	before := versionsOf(t, eps, base...)

	// changed lists, per group, the kinds whose version must differ; all
	// others must be equal.
	type changed map[Group][]kind
	tests := []struct {
		name  string
		mut   func(t *testing.T) ([]plan.Plan, EndpointSource)
		wants changed
	}{{
		name: "same plans, other order",
		mut: func(*testing.T) ([]plan.Plan, EndpointSource) {
			return []plan.Plan{base[1], base[0]}, eps
		},
		wants: changed{},
	}, {
		name: "weight change moves only routes (Envoy RDS, gRPC inline LDS)",
		mut: func(*testing.T) ([]plan.Plan, EndpointSource) {
			return []plan.Plan{canaryPlan("reviews", 50, []string{"reviews"}), base[1]}, eps
		},
		wants: changed{GroupEnvoy: {kindRoute}, GroupGRPC: {kindListener}},
	}, {
		name: "endpoint change moves only EDS",
		mut: func(t *testing.T) ([]plan.Plan, EndpointSource) {
			e := staticFor(t, "reviews", "ratings")
			must(t, e.Set("", "reviews", revCanary, "127.0.0.1:1", "127.0.0.1:2"))
			return base, e
		},
		wants: changed{GroupEnvoy: {kindEndpoint}, GroupGRPC: {kindEndpoint}},
	}, {
		name: "new canary revision moves clusters, endpoints and routes, not Envoy's listener",
		mut: func(t *testing.T) ([]plan.Plan, EndpointSource) {
			p := edit(base[0], func(p *plan.Plan) { p.Subsets[1].Revision = "v3" })
			return []plan.Plan{p, base[1]}, eps
		},
		wants: changed{GroupEnvoy: {kindRoute, kindCluster, kindEndpoint}, GroupGRPC: {kindListener, kindCluster, kindEndpoint}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plans, e := tc.mut(t)
			after := versionsOf(t, e, plans...)
			for _, g := range groups {
				for k := range numKinds {
					want := slices.Contains(tc.wants[g], k)
					if got := before[g][k] != after[g][k]; got != want {
						t.Errorf("%s %s version changed=%v, want %v", g, kindName[k], got, want)
					}
				}
			}
		})
	}
}
