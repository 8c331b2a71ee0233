package xds

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// bookinfoAtAnalysis loads examples/bookinfo's Rollout and steps the
// engine, every replica available and every plan acknowledged, from its
// first revision to the analysis step of a new one: v1 stable, the new
// revision at 10%, the baseline at 10% and jason on his extra revision.
func bookinfoAtAnalysis(t *testing.T) (*v1alpha1.Rollout, plan.Plan) {
	t.Helper()
	res, err := manifest.LoadDir(filepath.Join("..", "examples", "bookinfo"))
	must(t, err)
	must(t, res.Err())
	ros := res.Rollouts()
	if len(ros) != 1 {
		t.Fatalf("examples/bookinfo holds %d Rollouts, want 1", len(ros))
	}
	ro := ros[0]
	now := time.Unix(1.8e9, 0)
	step := func(i int) engine.Output {
		w := &engine.Workload{StableAvailable: 3, CanaryAvailable: 3, ExtraAvailable: map[string]int32{}}
		for _, x := range ro.Status.ExtraRevisions {
			w.ExtraAvailable[x.Revision] = x.Replicas
		}
		obs := engine.Observations{Workload: w}
		if v := ro.Status.Traffic.PlanVersion; v != "" {
			obs.DataPlane = engine.DataPlane{Version: v, State: engine.AckAcknowledged}
		}
		out, err := engine.Step(engine.Input{Rollout: ro, Observations: obs, Now: now.Add(time.Duration(i) * time.Second)})
		must(t, err)
		ro.Status = out.Status
		return out
	}
	for i := range 5 {
		if step(i); ro.Status.Phase == v1alpha1.PhaseHealthy && ro.Status.Traffic.AcknowledgedVersion == ro.Status.Traffic.PlanVersion {
			break
		}
	}
	if ro.Status.StableRevision == "" {
		t.Fatalf("the first revision never became stable: %+v", ro.Status)
	}
	ro.Spec.Template.Spec.Containers[0].Image = "docker.io/istio/examples-bookinfo-reviews-v3:1.20.3"
	for i := 10; i < 40; i++ {
		out := step(i)
		st := ro.Status
		if st.CurrentStepIndex != nil && *st.CurrentStepIndex == 3 && st.StepAcknowledgedAt != nil {
			return ro, out.Plan
		}
	}
	t.Fatalf("never at the analysis step: phase %s, step %v, %s", ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.Message)
	return nil, plan.Plan{}
}

// matches reports whether r's match is described by want: a header
// name=value, "prefix:/p", or a cookie name found in the cookie regex.
func matches(r *routev3.Route, want string) bool {
	m := r.GetMatch()
	var got []string
	for _, h := range m.GetHeaders() {
		got = append(got, h.GetName()+"="+h.GetStringMatch().GetExact())
		if h.GetName() == "cookie" {
			got = append(got, "cookie:"+h.GetStringMatch().GetSafeRegex().GetRegex())
		}
	}
	if p := m.GetPrefix(); p != "" && p != "/" {
		got = append(got, "prefix:"+p)
	}
	return slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, want) })
}

// ruleRoute is the route named name of vh, which must match as want says.
func ruleRoute(t *testing.T, g Group, vh *routev3.VirtualHost, name, want string) *routev3.Route {
	t.Helper()
	r := routeNamed(t, vh, name)
	if !matches(r, want) {
		t.Errorf("%s: route %s matches %v, want %s", g, name, r.GetMatch(), want)
	}
	return r
}

// TestBookinfoExampleTranslates: examples/bookinfo's Rollout, at the step
// where everything it uses is in force, becomes valid xDS resources
// (Translate validates every one) carrying each of its features: jason's
// route to his revision, the split over stable, canary and the baseline
// in one ring hashed on x-user, and the four policy rules (alice aborted
// with HTTP 500 for Envoy and INTERNAL for gRPC, bob delayed 2 s with a
// 10 s timeout, retries under /reviews/, a tenth of chaos=on aborted with
// 503).
func TestBookinfoExampleTranslates(t *testing.T) {
	t.Parallel()
	ro, p := bookinfoAtAnalysis(t)
	eps := NewStatic()
	for i, s := range p.Subsets {
		must(t, eps.Set(ro.Namespace, ro.Spec.Service.Name, s.Revision, fmt.Sprintf("10.1.%d.1:9080", i), fmt.Sprintf("10.1.%d.2:9080", i)))
	}
	if got := len(p.Subsets); got != 4 {
		t.Fatalf("plan subsets %+v, want stable, canary, jason and baseline", p.Subsets)
	}
	res, err := Translate([]plan.Plan{p}, eps, TranslateOptions{})
	must(t, err)
	host := ro.Spec.Service.Hosts[0]
	svc := ServiceKey(ro.Namespace, ro.Spec.Service.Name)
	cluster := func(subset string) string { return svc + "|" + p.Revision(subset) }

	for _, g := range []Group{GroupEnvoy, GroupGRPC} {
		var vh *routev3.VirtualHost
		if g == GroupEnvoy {
			vh = envoyVHost(t, res, host)
		} else {
			vh = grpcVHost(t, res, host)
		}
		var names []string
		for _, r := range vh.GetRoutes() {
			names = append(names, r.GetName())
		}
		t.Logf("%s routes: %v", g, names)

		jason := ruleRoute(t, g, vh, "revision-jason", "end-user=jason")
		if !slices.Equal(weights(jason), []string{cluster("jason") + "=100"}) {
			t.Errorf("%s: jason's route %v, want all to %s", g, jason, cluster("jason"))
		}
		alice := ruleRoute(t, g, vh, "rule-alice", "end-user=alice")
		abort := faultOf(t, alice).GetAbort()
		if pc := abort.GetPercentage(); pc.GetNumerator() != 100 || pc.GetDenominator() != typev3.FractionalPercent_HUNDRED {
			t.Errorf("%s: alice's abort percentage %v, want 100/HUNDRED", g, pc)
		}
		switch g {
		case GroupEnvoy:
			if abort.GetHttpStatus() != 500 {
				t.Errorf("envoy: alice's abort %v, want HTTP 500", abort)
			}
		case GroupGRPC:
			if abort.GetGrpcStatus() != 13 {
				t.Errorf("grpc: alice's abort %v, want gRPC status 13 (INTERNAL)", abort)
			}
		}
		bob := ruleRoute(t, g, vh, "rule-bob", "end-user=bob")
		if d := faultOf(t, bob).GetDelay(); d.GetFixedDelay().AsDuration() != 2*time.Second || d.GetPercentage().GetNumerator() != 100 {
			t.Errorf("%s: bob's delay %v, want 2s for all", g, d)
		}
		limit := bob.GetRoute().GetTimeout().AsDuration()
		if g == GroupGRPC {
			limit = bob.GetRoute().GetMaxStreamDuration().GetMaxStreamDuration().AsDuration()
		}
		if limit != 10*time.Second {
			t.Errorf("%s: bob's timeout %s, want his rule's 10s", g, limit)
		}
		reads := ruleRoute(t, g, vh, "rule-retry-reads", "prefix:/reviews/")
		if rp := reads.GetRoute().GetRetryPolicy(); rp.GetNumRetries().GetValue() != 2 || rp.GetRetryOn() != "5xx,reset,connect-failure" {
			t.Errorf("%s: retry policy under /reviews/ %v, want 2 retries on 5xx,reset,connect-failure", g, rp)
		}
		chaos := ruleRoute(t, g, vh, "rule-chaos", "cookie:")
		if !strings.Contains(chaos.GetMatch().GetHeaders()[0].GetStringMatch().GetSafeRegex().GetRegex(), "chaos") {
			t.Errorf("%s: chaos route matches %v, want the chaos cookie", g, chaos.GetMatch())
		}
		if a := faultOf(t, chaos).GetAbort(); a.GetPercentage().GetNumerator() != 10 {
			t.Errorf("%s: chaos abort %v, want 10%%", g, a)
		}
		// The weighted route: one ring over stable, canary and baseline.
		primary := routeNamed(t, vh, "primary")
		if got := weights(primary); !slices.Equal(got, []string{svc + "|@affinity=100"}) {
			t.Errorf("%s: primary route %v, want the affinity ring", g, got)
		}
		if hp := primary.GetRoute().GetHashPolicy(); len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-user" {
			t.Errorf("%s: hash policy %v, want header x-user", g, hp)
		}
		// Every rule route of the weighted route keeps the split: it
		// goes to the ring too. jason's own rule routes keep his.
		for _, r := range []*routev3.Route{alice, bob, reads, chaos} {
			if got := weights(r); !slices.Equal(got, []string{svc + "|@affinity=100"}) {
				t.Errorf("%s: rule route %s sends %v, want the split's ring", g, r.GetName(), got)
			}
		}
		if got := weights(routeNamed(t, vh, "revision-jason-rule-alice")); !slices.Equal(got, []string{cluster("jason") + "=100"}) {
			t.Errorf("%s: jason's copy of alice's rule sends %v, want jason's revision", g, got)
		}
	}

	// The ring's endpoints carry the split: 80% stable, 10% canary, 10% baseline.
	share := map[string]uint32{}
	for _, e := range endpointsNamed(t, res.Envoy, svc+"|@affinity").GetEndpoints()[0].GetLbEndpoints() {
		a := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
		share[a[:len("10.1.0")]] += e.GetLoadBalancingWeight().GetValue()
	}
	for i, s := range p.Subsets {
		want := map[string]uint32{plan.Stable: ringSize * 80 / 100, plan.Canary: ringSize / 10, "baseline": ringSize / 10, "jason": 0}[s.Name]
		if got := share[fmt.Sprintf("10.1.%d", i)]; got+1 < want || got > want+1 {
			t.Errorf("ring points of %s: %d of %d, want about %d", s.Name, got, ringSize, want)
		}
	}
}
