package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Property of the silent-proxy policy, over random deadlines, policies,
// node counts and silences: a step is acknowledged only by an ACK of
// every node, or, with Exclude, when at least one node applied the plan
// and every node that did not has been silent past the deadline. Hold
// never lets a silent node through, and the stale count always equals the
// nodes silent past the deadline.
func TestSilentProxyPolicyProperty(t *testing.T) {
	t.Parallel()
	seeds := 400
	if testing.Short() {
		seeds = 50
	}
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 0x51e47))
		policy := []v1alpha1.SilentProxyPolicy{"", v1alpha1.SilentHold, v1alpha1.SilentExclude}[r.IntN(3)]
		deadline := time.Duration(1+r.IntN(60)) * time.Second
		ro := standalone("v2", canary(weight(10), weight(30), weight(60), pauseForever()))
		ro.Spec.DataPlane = v1alpha1.DataPlanePolicy{AckDeadlineSeconds: i32(int32(deadline / time.Second)), SilentProxies: policy}
		h := newHarness(t, ro)
		for i := range 60 {
			h.now = h.now.Add(time.Duration(r.IntN(20000)) * time.Millisecond)
			var dp DataPlane
			switch r.IntN(4) {
			case 0: // nothing new
			case 1:
				dp = DataPlane{Version: h.out.Plan.Version, State: AckAcknowledged}
			default:
				n := 1 + r.IntN(4)
				a := r.IntN(n + 1)
				dp = DataPlane{Version: h.out.Plan.Version, Subscribed: n, Acked: a}
				for j := range n - a {
					since := h.now.Add(-time.Duration(r.IntN(90)) * time.Second)
					dp.Silent = append(dp.Silent, SilentNode{Name: fmt.Sprintf("node-%d", j), Since: since})
				}
				if a == n {
					dp.State = AckAcknowledged
				}
			}
			before := h.ro.Status.StepAcknowledgedAt
			step := h.stepIndex()
			h.step(Observations{DataPlane: dp})
			late := 0
			for _, s := range dp.Silent {
				if !h.now.Before(s.Since.Add(deadline)) {
					late++
				}
			}
			where := fmt.Sprintf("seed %d, iteration %d, policy %q, deadline %s, observed %+v", seed, i, policy, deadline, dp)
			// Every step here is a weight, so a step moves on only when
			// the data plane acknowledged it.
			counted := (before == nil && h.ro.Status.StepAcknowledgedAt != nil) || h.stepIndex() > step
			if counted && dp.State != AckAcknowledged {
				if policy != v1alpha1.SilentExclude || dp.Acked == 0 || dp.Acked+late != dp.Subscribed {
					t.Fatalf("%s: step %d acknowledged without every non-stale node", where, step)
				}
			}
			if dp.State == AckPending && dp.Version != "" && dp.Version == h.ro.Status.Traffic.PlanVersion {
				got := int32(0)
				if sn := h.ro.Status.Traffic.StaleNodes; sn != nil {
					got = sn.Count
				}
				if int(got) != late {
					t.Fatalf("%s: %d stale nodes reported, want %d", where, got, late)
				}
			}
		}
	}
}
