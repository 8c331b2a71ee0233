package xds

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/plan"
)

// An abort goes from 100% canary straight to a plan without the canary
// subset. A real grpc-go client under load through that change, many
// times over, must see every call answered: the canary's cluster stays
// served, and named by the keep-warm route, for the abort's plan
// version, so the client never routes to a cluster it was told is gone
// (retain.go). Rounds alternate between the canary coming back while it
// is still kept (a retry right after the abort) and after a further plan
// version dropped it at 0%.
func TestGRPCAbortFromFullCanaryLosesNoCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := canaryPlan("reviews", 0, []string{"reviews"})
	e.publish(t, start)
	c, _ := e.client(t, "abort", "reviews")
	e.waitAck(t, start)

	// Every call counts, the load's and the polls' alike; a failed one is
	// kept.
	var mu sync.Mutex
	var failed []error
	served := map[string]int{}
	call := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, err)
			return ""
		}
		served[r.GetHostname()]++
		return r.GetHostname()
	}
	stop := repeat(8, func() { call() })
	all := func(want string) {
		t.Helper()
		poll.Within(t, 10*time.Second, "all calls served by "+want, func() bool {
			for range 50 {
				if call() != want {
					return false
				}
			}
			return true
		})
	}
	step := func(p plan.Plan) {
		t.Helper()
		e.publish(t, p)
		e.waitAck(t, p)
	}
	abort := stableOnly("reviews", []string{"reviews"})
	// A later plan version, still stable only: the canary's cluster goes.
	later := edit(abort, func(p *plan.Plan) { p.Hosts[0].Routes[0].Policy = &plan.Policy{Timeout: time.Minute} })
	const rounds = 30
	for i := range rounds {
		// The canary comes back at 0% first, as a retry starts it.
		step(canaryPlan("reviews", 0, []string{"reviews"}))
		step(canaryPlan("reviews", 100, []string{"reviews"}))
		all("canary")
		step(abort)
		all("stable")
		if i%2 == 1 {
			step(later)
			all("stable")
		}
	}
	stop()
	t.Logf("served %v", served)
	if served["canary"] == 0 || served["stable"] == 0 {
		t.Errorf("served %v, want both revisions", served)
	}
	for i, err := range failed {
		if i == 10 {
			t.Errorf("... and %d more", len(failed)-i)
			break
		}
		t.Errorf("call failed across an abort: %s: %s", status.Code(err), status.Convert(err).Message())
	}
}

// What a plan version keeps of the one before: the clusters, with their
// load assignments, it no longer makes, in both groups, named by gRPC's
// keep-warm route and by no Envoy route; the same again while the version
// stays; nothing once the version moves on, nor for a service new to the
// publish.
func TestTranslateKeepsDroppedClustersOnePlan(t *testing.T) {
	t.Parallel()
	eps := staticFor(t, "reviews")
	full := edit(canaryPlan("reviews", 100, []string{"reviews"}), func(p *plan.Plan) {
		p.Hosts[0].Routes[0].Affinity = &plan.Affinity{Header: "x-session"}
	})
	abort := stableOnly("reviews", []string{"reviews"})
	later := edit(abort, func(p *plan.Plan) { p.Hosts[0].Routes[0].Policy = &plan.Policy{Timeout: time.Minute} })
	v1, v2, ring := "reviews|"+revStable, "reviews|"+revCanary, affinityClusterName(&full)

	run := func(prev *Resources, p plan.Plan) *Resources {
		t.Helper()
		var served map[string]*served
		if prev != nil {
			served = prev.served
		}
		r, err := translate([]plan.Plan{p}, eps, TranslateOptions{}, served, nil)
		must(t, err)
		for _, g := range groups {
			if _, _, err := buildSnapshot(g, r.Group(g)); err != nil {
				t.Fatalf("%s snapshot: %v", g, err)
			}
		}
		return r
	}
	check := func(what string, r *Resources, want ...string) {
		t.Helper()
		for _, g := range groups {
			var got []string
			for _, c := range r.Group(g).Clusters {
				got = append(got, c.GetName())
				clusterNamed(t, r.Group(g), c.GetName())
				endpointsNamed(t, r.Group(g), c.GetName())
				if o := r.Group(g).owners[serviceOwner("reviews")]; !o.owns(resID{kindCluster, c.GetName()}) || !o.owns(resID{kindEndpoint, c.GetName()}) {
					t.Errorf("%s: %s cluster %s not owned by the service", what, g, c.GetName())
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s clusters %v, want %v", what, g, got, want)
			}
		}
		var warm []string
		for _, rt := range grpcVHost(t, r, "reviews").GetRoutes() {
			if rt.GetName() == KeepWarmRoute {
				warm = clustersOf(rt)
			}
		}
		slices.Sort(warm)
		if len(want) == 1 {
			want = nil // one cluster: no keep-warm route
		}
		if !slices.Equal(warm, want) {
			t.Errorf("%s: gRPC keep-warm clusters %v, want %v", what, warm, want)
		}
	}
	// Envoy's routes after the abort name stable's cluster alone.
	envoyOnly := func(what string, r *Resources) {
		t.Helper()
		for _, rt := range envoyVHost(t, r, "reviews").GetRoutes() {
			if got := clustersOf(rt); !slices.Equal(got, []string{v1}) {
				t.Errorf("%s: Envoy route %s names %v, want %s alone", what, rt.GetName(), got, v1)
			}
		}
	}

	first := run(nil, full)
	check("first plan", first, ring, v1, v2)
	aborted := run(first, abort)
	check("abort", aborted, ring, v1, v2)
	envoyOnly("abort", aborted)
	again := run(aborted, abort)
	check("abort published again", again, ring, v1, v2)
	envoyOnly("abort published again", again)
	check("the next plan version", run(again, later), v1)
	check("a service new to the publish", run(nil, abort), v1)
}

// clustersOf names the clusters a route sends to, weighted or not.
func clustersOf(rt *routev3.Route) []string {
	if c := rt.GetRoute().GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, c := range rt.GetRoute().GetWeightedClusters().GetClusters() {
		out = append(out, c.GetName())
	}
	return out
}

// A plan a node rejected keeps nothing for the next one: its clusters,
// named in the keep-warm route, would reach that node again and have
// the next plan rejected too. After a plan every node applied, the abort
// keeps the canary's cluster; after a rejected one, it does not, and the
// node applies it.
func TestRejectedPlanKeepsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clusters := func() []string {
		e.srv.pub.Lock()
		defer e.srv.pub.Unlock()
		var out []string
		for _, c := range e.srv.bases[GroupGRPC].lists[kindCluster] {
			out = append(out, c.(interface{ GetName() string }).GetName())
		}
		return out
	}
	v1, v2 := "reviews|"+revStable, "reviews|"+revCanary
	applied := canaryPlan("reviews", 100, []string{"reviews"})
	e.publish(t, applied)
	e.client(t, "rejecter", "reviews")
	e.waitAck(t, applied)
	abort := stableOnly("reviews", []string{"reviews"})
	e.publish(t, abort)
	e.waitAck(t, abort)
	if got := clusters(); !slices.Equal(got, []string{v1, v2}) {
		t.Errorf("after an applied plan, the abort serves clusters %v, want %v", got, []string{v1, v2})
	}

	e.setHook(func(g Group, r *GroupResources) {
		if g == GroupGRPC {
			for _, l := range r.Listeners {
				corruptRegex(t, l)
			}
		}
	})
	rejected := canaryPlan("reviews", 90, []string{"reviews"})
	e.publish(t, rejected)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rej *RejectedError
	if _, err := e.srv.Wait(ctx, "reviews", rejected.Version); !errors.As(err, &rej) {
		t.Fatalf("Wait for the invalid plan: %v, want a rejection", err)
	}
	e.setHook(nil)
	e.publish(t, abort)
	e.waitAck(t, abort)
	if got := clusters(); !slices.Equal(got, []string{v1}) {
		t.Errorf("after a rejected plan, the abort serves clusters %v, want %v alone", got, v1)
	}
}
