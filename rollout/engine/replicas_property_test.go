package engine

// Property tests of the replicas router (no router): random canaries of
// weights, pauses and analysis, run as pod counts, through the same random
// worlds as TestEngineProperties, with the general properties that hold
// for every router and the replicas router's own. Replay a failure with
//
//	go test ./rollout/engine -run 'TestReplicasRouterProperties/<name>$' -prop.seed=<seed> -v

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// propReplicasExempt are the general properties that speak of a data plane
// the replicas router does not have: promotion after the data plane
// acknowledged 100% (the pods are its acknowledgement: promotion_on_pods),
// the canary subset known before traffic (no warm-up), replicas and
// weights by the steps' weight rather than the achieved one
// (split_carried_by_pods, split_follows_steps), and NACKs stopping the
// rollout (nack_ignored).
var propReplicasExempt = []string{"promotion_acknowledged", "subset_known_first", "canary_carried", "weights_follow_steps", "nack_attributed", "abort_keeps_canary"}

// propReplicasProperties are the properties checked in replicas worlds.
var propReplicasProperties = func() []propProperty {
	var out []propProperty
	for _, p := range propProperties {
		if !slices.Contains(propReplicasExempt, p.name) {
			out = append(out, p)
		}
	}
	return append(out,
		propProperty{"split_recorded", propSplitRecorded},
		propProperty{"split_carried_by_pods", propSplitCarried},
		propProperty{"split_moves_with_pods", propSplitMovesWithPods},
		propProperty{"pods_held", propPodsHeld},
		propProperty{"split_follows_steps", propSplitFollowsSteps},
		propProperty{"abort_scales_to_stable", propAbortScalesToStable},
		propProperty{"promotion_on_pods", propPromotionOnPods},
		propProperty{"nack_ignored", propNackIgnored},
	)
}()

func TestReplicasRouterProperties(t *testing.T) {
	t.Parallel()
	propRunAll(t, propReplicasProperties, func(seed uint64, steps int) map[int]string {
		return propWalk(newPropWorldOf(seed, true), "TestReplicasRouterProperties", propReplicasProperties, steps)
	})
}

// genReplicasSpec is a Rollout the replicas router runs: controller mode,
// a canary of weights, pauses and analysis, no routing of its own.
func (w *propWorld) genReplicasSpec() v1alpha1.RolloutSpec {
	n := int32(1 + w.intn(12))
	if w.chance(0.05) {
		n = 0
	}
	spec := v1alpha1.RolloutSpec{
		Service: v1alpha1.ServiceSpec{Name: "app", Hosts: []string{"app"}, Port: 8080,
			Routers: []v1alpha1.Router{{Replicas: &v1alpha1.ReplicasRouter{}}}},
		Replicas: &n,
		Strategy: w.genStrategy(),
	}
	w.genPolicies(&spec)
	return spec
}

// propScaleOf is the replicas Output.Scale gives rev.
func propScaleOf(out Output, rev string) int32 {
	i := slices.IndexFunc(out.Scale, func(s Scale) bool { return s.Revision == rev })
	if i < 0 {
		return 0
	}
	return out.Scale[i].Replicas
}

// propRollingSplit is the split status records while a rollout runs, nil
// otherwise.
func propRollingSplit(st *v1alpha1.RolloutStatus) *v1alpha1.ReplicaSplitStatus {
	if st.CanaryRevision == "" || st.Abort != nil {
		return nil
	}
	return st.Traffic.Replicas
}

// status.traffic.replicas is always there, is the rule's split of the
// weight it names, the plan routes its achieved weight, and the plan is
// recorded as in force.
func propSplitRecorded() propCheck {
	return func(c *propCtx) string {
		st := &c.out.Status
		sp := st.Traffic.Replicas
		if sp == nil {
			return "no status.traffic.replicas with the replicas router"
		}
		r := *c.in.Rollout.Spec.Replicas
		want := splitOf(&c.in.Rollout.Spec, traffic{active: true, weight: sp.Weight, full: sp.Weight == 100 && sp.Stable == 0})
		if st.CanaryRevision == "" || st.Abort != nil {
			want = podSplit{stable: r}
		}
		if sp.Canary != want.canary || sp.Stable != want.stable || sp.AchievedWeight != want.achieved() {
			return fmt.Sprintf("status.traffic.replicas %+v, but the rule gives %+v for weight %d", *sp, want, sp.Weight)
		}
		for _, h := range c.out.Plan.Hosts {
			if got := h.Weight(plan.Canary); got != sp.AchievedWeight {
				return fmt.Sprintf("host %s routes %d%% to the canary, the pods %d%%", h.Name, got, sp.AchievedWeight)
			}
		}
		if st.Traffic.AcknowledgedVersion != c.out.Plan.Version {
			return fmt.Sprintf("plan %s not recorded as in force (acknowledged %q)", c.out.Plan.Version, st.Traffic.AcknowledgedVersion)
		}
		return ""
	}
}

// The pods of the split in force are never scaled away: each side runs at
// least its share while a rollout runs.
func propSplitCarried() propCheck {
	return func(c *propCtx) string {
		st := &c.out.Status
		sp := propRollingSplit(st)
		if sp == nil {
			return ""
		}
		if got := propScaleOf(c.out, st.CanaryRevision); got < sp.Canary {
			return fmt.Sprintf("split in force %+v, but the canary is scaled to %d", *sp, got)
		}
		if got := propScaleOf(c.out, st.StableRevision); got < sp.Stable {
			return fmt.Sprintf("split in force %+v, but stable is scaled to %d", *sp, got)
		}
		return ""
	}
}

// A side's share grows only with its pods available: the split in force
// moves to more canary (or more stable) pods only in a Step that observed
// that many available. Abort, promotion and starting over go back to
// stable at once and are not moves of a running rollout.
func propSplitMovesWithPods() propCheck {
	return func(c *propCtx) string {
		prevSt, st := &c.in.Rollout.Status, &c.out.Status
		was, now := propRollingSplit(prevSt), propRollingSplit(st)
		if was == nil || now == nil || prevSt.CanaryRevision != st.CanaryRevision || prevSt.Starts != st.Starts {
			return ""
		}
		wl := c.in.Observations.Workload
		if now.Canary > was.Canary && (wl == nil || wl.CanaryAvailable < now.Canary) {
			return fmt.Sprintf("split moved from %+v to %+v with workload %s", *was, *now, propJSON(wl))
		}
		if now.Stable > was.Stable && (wl == nil || wl.StableAvailable < now.Stable) {
			return fmt.Sprintf("split moved from %+v to %+v (stable grew) with workload %s", *was, *now, propJSON(wl))
		}
		return ""
	}
}

// A closed window or a pause holds the pods in force exactly: every pod
// takes requests, so none is added ahead of a step that cannot run.
func propPodsHeld() propCheck {
	return func(c *propCtx) string {
		st := &c.out.Status
		sp := propRollingSplit(st)
		if sp == nil || (!c.in.Observations.Window.Closed && st.Pause == nil) {
			return ""
		}
		canary, stable := propScaleOf(c.out, st.CanaryRevision), propScaleOf(c.out, st.StableRevision)
		if canary != sp.Canary || stable != sp.Stable {
			return fmt.Sprintf("held (window closed %v, pause %v) at %+v, but scaled to canary %d, stable %d",
				c.in.Observations.Window.Closed, st.Pause != nil, *sp, canary, stable)
		}
		return ""
	}
}

// The weight in force is never above both the weight in force before and
// the weight the current step asks for.
func propSplitFollowsSteps() propCheck {
	return func(c *propCtx) string {
		now := propRollingSplit(&c.out.Status)
		if now == nil {
			return ""
		}
		var was int32
		if prev := propRollingSplit(&c.in.Rollout.Status); prev != nil && c.in.Rollout.Status.CanaryRevision == c.out.Status.CanaryRevision {
			was = prev.Weight
		}
		if want := propTargetWeight(&c.in.Rollout.Spec, &c.out.Status); now.Weight > max(was, want) {
			return fmt.Sprintf("weight %d in force, above both the %d before and the %d the step asks for", now.Weight, was, want)
		}
		return ""
	}
}

// After an abort the canary runs no pod and stable all of spec.replicas.
func propAbortScalesToStable() propCheck {
	return func(c *propCtx) string {
		st := &c.out.Status
		if st.Abort == nil {
			return ""
		}
		r := *c.in.Rollout.Spec.Replicas
		if got := propScaleOf(c.out, st.CanaryRevision); got != 0 {
			return fmt.Sprintf("aborted, but the canary is scaled to %d", got)
		}
		if got := propScaleOf(c.out, st.StableRevision); got != r {
			return fmt.Sprintf("aborted, but stable is scaled to %d of %d", got, r)
		}
		return ""
	}
}

// A revision becomes stable only once it ran all of spec.replicas: either
// the split in force already was all canary, or the Step saw that many
// canary pods available.
func propPromotionOnPods() propCheck {
	return func(c *propCtx) string {
		prevSt, st := &c.in.Rollout.Status, &c.out.Status
		if prevSt.StableRevision == "" || st.StableRevision == prevSt.StableRevision {
			return ""
		}
		r := *c.in.Rollout.Spec.Replicas
		if sp := prevSt.Traffic.Replicas; sp != nil && sp.Canary >= r {
			return ""
		}
		if wl := c.in.Observations.Workload; wl != nil && wl.CanaryAvailable >= r {
			return ""
		}
		return fmt.Sprintf("promoted %s with workload %s and split %+v", st.StableRevision, propJSON(c.in.Observations.Workload), prevSt.Traffic.Replicas)
	}
}

// A data plane's NACK neither pauses nor aborts: the replicas router's
// data plane is its pods.
func propNackIgnored() propCheck {
	return func(c *propCtx) string {
		st := &c.out.Status
		if a := st.Abort; a != nil && a.Reason == v1alpha1.ReasonNack {
			return "aborted on a NACK: " + a.Message
		}
		if p := st.Pause; p != nil && p.Reason == v1alpha1.ReasonNack {
			return "paused on a NACK: " + p.Message
		}
		if st.Traffic.RejectedVersion != "" {
			return "status records a rejected plan " + st.Traffic.RejectedVersion
		}
		return ""
	}
}

// Replicas worlds do roll out (the properties above are not checked on
// worlds that only ever wait): some of them promote a revision.
func TestReplicasWorldRollsOut(t *testing.T) {
	t.Parallel()
	promoted := 0
	for seed := uint64(1); seed <= 50; seed++ {
		w := newPropWorldOf(seed, true)
		in := w.first()
		for i := 1; i <= 60; i++ {
			out, err := Step(in)
			if err != nil {
				t.Fatal(err)
			}
			if was := in.Rollout.Status.StableRevision; was != "" && out.Status.StableRevision != was {
				promoted++
			}
			w.apply(out)
			in = w.next(i)
		}
	}
	if promoted == 0 {
		t.Fatal("no replicas world ever promoted a revision")
	}
	t.Logf("%d promotions in 50 worlds", promoted)
}
