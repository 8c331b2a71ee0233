package xdsplane

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// bookinfoAtFifty steps the engine through bookinfo's reviews Rollout,
// with every replica (extra revisions' too) available and every plan
// acknowledged, until v3 takes 50% and end-user jason is routed to his
// extra revision, built from the canary's template with image v2. It
// returns that plan and jason's revision.
func bookinfoAtFifty(t *testing.T, ns string) (plan.Plan, string) {
	t.Helper()
	ro := newRollout(ns, "reviews", "reviews", "v1")
	ro.Spec.Strategy.Canary.Steps = []v1alpha1.CanaryStep{
		{SetRevision: &v1alpha1.RevisionStep{
			Name:     "jason",
			Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromCanary, Images: map[string]string{"app": "v2"}},
			Match:    []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: ptr.To("jason")}}}},
		}},
		{SetWeight: ptr.To[int32](50)},
		{Pause: &v1alpha1.PauseStep{}},
	}
	advance(t, ro, 0)
	ro.Spec.Template.Spec.Containers[0].Image = "v3"
	now := time.Now()
	for i := range 20 {
		w := &engine.Workload{StableAvailable: 3, CanaryAvailable: 3, ExtraAvailable: map[string]int32{}}
		for _, x := range ro.Status.ExtraRevisions {
			w.ExtraAvailable[x.Revision] = 1
		}
		obs := engine.Observations{Workload: w}
		if v := ro.Status.Traffic.PlanVersion; v != "" {
			obs.DataPlane = engine.DataPlane{Version: v, State: engine.AckAcknowledged}
		}
		out, err := engine.Step(engine.Input{Rollout: ro, Observations: obs, Now: now.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		ro.Status = out.Status
		if x := out.Status.ExtraRevisions; out.Status.Phase == v1alpha1.PhasePaused && len(x) == 1 && out.Status.Traffic.CanaryWeight == 50 {
			return out.Plan, x[0].Revision
		}
	}
	t.Fatalf("never at 50%% with jason: phase %s, weight %d, extra revisions %+v", ro.Status.Phase, ro.Status.Traffic.CanaryWeight, ro.Status.ExtraRevisions)
	return plan.Plan{}, ""
}

// In controller mode the xDS endpoint source serves an extra revision as
// it serves stable and canary: its Service's EndpointSlices (labelled with
// the service and its revision, as the EndpointSlice controller copies
// them from the Service the reconciler makes) become its cluster, and
// jason's route sends to that cluster alone.
func TestExtraRevisionEndpoints(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	src, _ := sliceSource(t, ns)

	p, jason := bookinfoAtFifty(t, ns)
	tcp := []discoveryv1.EndpointPort{port("http", 9080, corev1.ProtocolTCP)}
	addr := map[string]string{}
	for i, s := range p.Subsets {
		addr[s.Name] = fmt.Sprintf("10.0.0.%d", i+1)
		es := slice(ns, "reviews-"+s.Revision+"-x", "reviews", s.Revision, discoveryv1.AddressTypeIPv4, tcp, endpoint(addr[s.Name], nil, nil))
		if err := c.Create(t.Context(), es); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Revision("jason"); got != jason || len(p.Subsets) != 3 {
		t.Fatalf("plan subsets %+v, want stable, canary and jason → %s", p.Subsets, jason)
	}
	poll.Until(t, "jason's endpoints in the cache", func() bool {
		eps, err := src.Endpoints(ns, "reviews", jason)
		return err == nil && len(eps) == 1
	})

	res, err := xds.Translate([]plan.Plan{p}, src, xds.TranslateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cluster := xds.ServiceKey(ns, "reviews") + "|" + jason
	got := map[string][]string{}
	for _, cla := range res.Envoy.Endpoints {
		for _, le := range cla.Endpoints {
			for _, e := range le.LbEndpoints {
				got[cla.ClusterName] = append(got[cla.ClusterName], e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
	}
	if !slices.Equal(got[cluster], []string{addr["jason"]}) || len(got) != 3 {
		t.Fatalf("endpoints %v, want %s → [%s] among three clusters", got, cluster, addr["jason"])
	}
	var toJason []string
	for _, rc := range res.Envoy.Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				hs := r.GetMatch().GetHeaders()
				if len(hs) != 1 || hs[0].GetName() != "end-user" {
					continue
				}
				for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
					if cw.GetWeight().GetValue() > 0 {
						toJason = append(toJason, cw.GetName())
					}
				}
			}
		}
	}
	if len(toJason) == 0 || slices.ContainsFunc(toJason, func(c string) bool { return c != cluster }) {
		t.Fatalf("end-user routes send to %v, want %s only", toJason, cluster)
	}
}
