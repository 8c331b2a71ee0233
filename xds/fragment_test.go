package xds

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/sluicehq/sluice/rollout/plan"
)

// TestReusedTranslationIsTheSame: a server that reuses the translation of
// unchanged plans serves, after every publish, exactly what a server that
// translates everything serves (a test hook turns reuse off), through
// weight changes, endpoint changes, a plan that drops its canary (whose
// cluster is kept one plan), a removal and a return.
func TestReusedTranslationIsTheSame(t *testing.T) {
	t.Parallel()
	services := []string{"reviews", "ratings", "details"}
	eps := staticFor(t, services...)
	reusing, err := New(Options{Endpoints: eps, Logger: quiet})
	must(t, err)
	fresh, err := New(Options{Endpoints: eps, Logger: quiet})
	must(t, err)
	fresh.hook = func(Group, *GroupResources) {}

	plans := map[string]plan.Plan{}
	for i, s := range services {
		plans[s] = canaryPlan(s, int32(10*i), []string{s})
	}
	noCanary := func(p plan.Plan) plan.Plan {
		return edit(p, func(p *plan.Plan) {
			p.Subsets = p.Subsets[:1]
			for i := range p.Hosts {
				p.Hosts[i].Routes = []plan.Route{{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}}}
			}
		})
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"first", func() {}},
		{"one weight", func() { plans["reviews"] = canaryPlan("reviews", 40, []string{"reviews"}) }},
		{"nothing", func() {}},
		{"endpoints of one revision", func() { must(t, eps.Set("", "ratings", revCanary, "127.0.0.1:20000", "127.0.0.1:20001")) }},
		{"canary dropped", func() { plans["details"] = noCanary(plans["details"]) }},
		{"then nothing", func() {}},
		{"then a weight elsewhere", func() { plans["ratings"] = canaryPlan("ratings", 70, []string{"ratings"}) }},
		{"removed", func() { delete(plans, "reviews") }},
		{"back", func() { plans["reviews"] = canaryPlan("reviews", 40, []string{"reviews"}) }},
		{"another host", func() { plans["details"] = canaryPlan("details", 5, []string{"details", "details-v2"}) }},
	}
	ctx := context.Background()
	for _, s := range steps {
		s.change()
		set := make([]plan.Plan, 0, len(plans))
		for _, p := range plans {
			set = append(set, p)
		}
		must(t, reusing.Publish(ctx, set))
		must(t, fresh.Publish(ctx, set))
		for _, g := range groups {
			if got, want := reusing.Versions(g), fresh.Versions(g); !maps.Equal(got, want) {
				t.Errorf("%s: %s versions %v, translated afresh %v", s.name, g, got, want)
			}
		}
		for _, p := range set {
			got, want := reusing.Status(PlanKey(&p), p.Version), fresh.Status(PlanKey(&p), p.Version)
			if got.Published != want.Published || got.Current != want.Current {
				t.Errorf("%s: %s status %+v, translated afresh %+v", s.name, PlanKey(&p), got, want)
			}
		}
	}
}

// TestHistoryIsBounded: publishing over and over keeps memory within the
// history bound: what only forgotten generations held is dropped, and a
// version published beyond the bound is no longer known.
func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	const kept = 4
	services := []string{"a", "b", "c", "d", "e"}
	srv, err := New(Options{Endpoints: staticFor(t, services...), Logger: quiet, History: kept})
	must(t, err)
	plans := make([]plan.Plan, len(services))
	for i, s := range services {
		plans[i] = canaryPlan(s, 1, []string{s})
	}
	first := plans[0]
	ctx := context.Background()
	must(t, srv.Publish(ctx, plans))
	for i := range 200 {
		plans[i%len(plans)] = canaryPlan(services[i%len(plans)], int32(2+i%90), []string{services[i%len(plans)]})
		must(t, srv.Publish(ctx, plans))
	}
	if st := srv.Status("a", first.Version); st.Published {
		t.Errorf("a version 200 publishes old is still known: %+v", st)
	}
	if st := srv.Status("a", plans[0].Version); !st.Published || !st.Current {
		t.Errorf("the current version: %+v", st)
	}
	srv.tracker.mu.Lock()
	defer srv.tracker.mu.Unlock()
	// Runs end at most once per publish; a sweep every kept publishes
	// leaves at most those of 2×kept generations.
	limit := 2*kept + 1
	for key, h := range srv.tracker.hist {
		for k := range numKinds {
			for name, runs := range h.res[k] {
				if len(runs) > limit {
					t.Errorf("%v %s %q: %d runs kept, want at most %d", key, kindName[k], name, len(runs), limit)
				}
			}
			if n := len(h.types[k]); n > limit {
				t.Errorf("%v %s: %d type versions kept, want at most %d", key, kindName[k], n, limit)
			}
		}
		for o, runs := range h.owners {
			if len(runs) > limit {
				t.Errorf("%v %s: %d runs kept, want at most %d", key, o, len(runs), limit)
			}
		}
		if got := fmt.Sprint(len(h.seqs)); got != fmt.Sprint(kept) {
			t.Errorf("%v: %s generations remembered, want %d", key, got, kept)
		}
	}
}

// TestClustersAreKeptOnce: both groups serve the same cluster and load
// assignment objects, and a plan that changes only its weights keeps
// them from the publish before, so a wave of weight changes does not hold
// every cluster twice; a revision whose endpoints change gets new ones.
func TestClustersAreKeptOnce(t *testing.T) {
	t.Parallel()
	eps := staticFor(t, "reviews")
	srv, err := New(Options{Endpoints: eps, Logger: quiet})
	must(t, err)
	ctx := context.Background()
	served := func() (envoy, grpc map[string]types.Resource) {
		srv.pub.Lock()
		defer srv.pub.Unlock()
		index := func(g Group) map[string]types.Resource {
			out := map[string]types.Resource{}
			b := srv.bases[g]
			for _, k := range []kind{kindCluster, kindEndpoint} {
				for _, r := range b.lists[k] {
					out[kindName[k]+" "+cachev3.GetResourceName(r)] = r
				}
			}
			return out
		}
		return index(GroupEnvoy), index(GroupGRPC)
	}
	same := func(what string, a, b map[string]types.Resource, want bool) {
		t.Helper()
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: %d and %d resources", what, len(a), len(b))
		}
		for name, r := range a {
			if got := b[name] == r; got != want {
				t.Errorf("%s: %s the same object: %v, want %v", what, name, got, want)
			}
		}
	}

	must(t, srv.Publish(ctx, []plan.Plan{canaryPlan("reviews", 10, []string{"reviews"})}))
	envoy1, grpc1 := served()
	same("envoy and grpc", envoy1, grpc1, true)

	must(t, srv.Publish(ctx, []plan.Plan{canaryPlan("reviews", 20, []string{"reviews"})}))
	envoy2, _ := served()
	same("after a weight change", envoy1, envoy2, true)

	must(t, eps.Set("", "reviews", revCanary, "127.0.0.1:20000"))
	must(t, srv.Publish(ctx, []plan.Plan{canaryPlan("reviews", 30, []string{"reviews"})}))
	envoy3, _ := served()
	for name, r := range envoy3 {
		changed := strings.Contains(name, "|"+revCanary)
		if got := envoy2[name] == r; got == changed {
			t.Errorf("after the canary's endpoints changed: %s the same object: %v, want %v", name, got, !changed)
		}
	}
}
