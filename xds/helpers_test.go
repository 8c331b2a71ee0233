package xds

import (
	"strconv"
	"sync"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/sluicehq/sluice/rollout/plan"
)

// Revisions used throughout: stable runs v1, canary v2.
const (
	revStable = "v1"
	revCanary = "v2"
)

// split is the engine's primary destinations: both subsets, always.
func split(canary int32) []plan.Destination {
	return []plan.Destination{
		{Subset: plan.Stable, Weight: 100 - canary},
		{Subset: plan.Canary, Weight: canary},
	}
}

// canaryPlan is a sealed plan for service with the given hosts (port
// 9080), a stable and a canary subset, and extra routes before the
// primary weighted route.
func canaryPlan(service string, canary int32, hosts []string, extra ...plan.Route) plan.Plan {
	routes := append(append([]plan.Route(nil), extra...), plan.Route{Name: "primary", Destinations: split(canary)})
	p := plan.Plan{
		Service: service,
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: revStable}, {Name: plan.Canary, Revision: revCanary}},
	}
	for _, h := range hosts {
		p.Hosts = append(p.Hosts, plan.Host{Name: h, Port: 9080, Routes: routes})
	}
	p.Seal()
	return p
}

// edit applies f to a copy of p and seals it.
func edit(p plan.Plan, f func(*plan.Plan)) plan.Plan {
	p.Subsets = append([]plan.Subset(nil), p.Subsets...)
	hosts := make([]plan.Host, len(p.Hosts))
	for i, h := range p.Hosts {
		h.Routes = append([]plan.Route(nil), h.Routes...)
		hosts[i] = h
	}
	p.Hosts = hosts
	f(&p)
	p.Seal()
	return p
}

// toCanary is a match route to the canary, as the engine builds them.
func toCanary(name string, m ...plan.Match) plan.Route {
	return plan.Route{Name: name, Match: m, Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}}
}

func header(name string, kind plan.HeaderMatchKind, value string) plan.Match {
	return plan.Match{Headers: []plan.HeaderMatch{{Name: name, Kind: kind, Value: value}}}
}

// staticFor returns endpoints for the stable and canary revisions of the
// services.
func staticFor(t testing.TB, services ...string) *Static {
	t.Helper()
	s := NewStatic()
	for i, svc := range services {
		must(t, s.Set("", svc, revStable, "127.0.0.1:"+strconv.Itoa(10000+2*i)))
		must(t, s.Set("", svc, revCanary, "127.0.0.1:"+strconv.Itoa(10001+2*i)))
	}
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// allResources lists every resource of a group.
func allResources(r *GroupResources) []types.Resource {
	var out []types.Resource
	for _, x := range r.Listeners {
		out = append(out, x)
	}
	for _, x := range r.Routes {
		out = append(out, x)
	}
	for _, x := range r.Clusters {
		out = append(out, x)
	}
	for _, x := range r.Endpoints {
		out = append(out, x)
	}
	return out
}

// repeat calls f over and over on n goroutines until stop, which returns
// once they have all returned.
func repeat(n int, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
					f()
				}
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
