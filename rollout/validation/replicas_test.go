package validation

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// replicasCanary is canary() with the replicas router and the steps pod
// counts can run: weights, a pause, analysis (background analysis too).
func replicasCanary() *v1alpha1.Rollout {
	r := canary()
	r.Spec.Replicas = new(int32(10))
	r.Spec.Service.Routers = []v1alpha1.Router{{Replicas: &v1alpha1.ReplicasRouter{}}}
	r.Spec.Strategy.Canary.Steps = []v1alpha1.CanaryStep{
		{SetWeight: new(int32(10))},
		{Pause: &v1alpha1.PauseStep{Duration: dur("1m")}},
		{Analysis: analysis("success-rate")},
		{SetWeight: new(int32(50))},
		{Pause: &v1alpha1.PauseStep{}},
	}
	return r
}

// The rounding rule: nearest (halves up), at least one canary pod above
// 0%, at least one stable pod below 100%, one of each with one replica.
func TestReplicaSplit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		replicas, weight       int32
		canary, stable, actual int32
	}{
		{10, 10, 1, 9, 10},
		{10, 0, 0, 10, 0},
		{10, 100, 10, 0, 100},
		{10, 15, 2, 8, 20}, // 1.5 rounds up
		{10, 14, 1, 9, 10},
		{4, 10, 1, 3, 25}, // 0.4 would be none: at least one
		{4, 50, 2, 2, 50},
		{4, 90, 3, 1, 75}, // 3.6 would be all: stable keeps one
		{3, 50, 2, 1, 67},
		{1, 10, 1, 1, 50}, // one replica: one of each
		{1, 100, 1, 0, 100},
		{2, 99, 1, 1, 50},
		{0, 50, 0, 0, 0},
		{100, 1, 1, 99, 1},
	}
	for _, c := range cases {
		canary, stable := ReplicaSplit(c.replicas, c.weight)
		if canary != c.canary || stable != c.stable {
			t.Errorf("ReplicaSplit(%d, %d) = %d, %d; want %d, %d", c.replicas, c.weight, canary, stable, c.canary, c.stable)
		}
		if got := AchievedWeight(canary, stable); got != c.actual {
			t.Errorf("AchievedWeight(%d, %d) = %d, want %d", canary, stable, got, c.actual)
		}
	}
	// Every weight with every small replica count: the bounds hold.
	for r := int32(1); r <= 20; r++ {
		for w := int32(0); w <= 100; w++ {
			c, s := ReplicaSplit(r, w)
			switch {
			case w > 0 && c < 1, w < 100 && s < 1, w == 0 && c != 0, w == 100 && s != 0:
				t.Fatalf("ReplicaSplit(%d, %d) = %d, %d", r, w, c, s)
			case r > 1 && c+s != r:
				t.Fatalf("ReplicaSplit(%d, %d) = %d, %d: not %d pods", r, w, c, s, r)
			}
		}
	}
}

func TestExactReplicas(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ replicas, weight, want int32 }{
		{4, 10, 10}, {10, 10, 10}, {11, 10, 20}, {3, 25, 4}, {4, 33, 100}, {3, 50, 4}, {7, 0, 7},
	} {
		got := ExactReplicas(c.replicas, c.weight)
		if got != c.want {
			t.Errorf("ExactReplicas(%d, %d) = %d, want %d", c.replicas, c.weight, got, c.want)
		}
		if cn, st := ReplicaSplit(got, c.weight); AchievedWeight(cn, st) != c.weight {
			t.Errorf("ExactReplicas(%d, %d) = %d does not run the weight exactly", c.replicas, c.weight, got)
		}
	}
}

// What pod counts cannot express is refused with the replicas router, at
// the field that asks for it.
func TestReplicasRouterRefuses(t *testing.T) {
	t.Parallel()
	replicas := []v1alpha1.Router{{Replicas: &v1alpha1.ReplicasRouter{}}}
	with := func(r *v1alpha1.Rollout) *v1alpha1.Rollout {
		r.Spec.Service.Routers = replicas
		return r
	}
	routing := replicasCanary()
	routing.Spec.Service.VirtualService = &v1alpha1.VirtualServiceRef{Name: "reviews"}
	routing.Spec.Service.DestinationRule = &v1alpha1.ObjectRef{Name: "reviews"}
	routing.Spec.Service.Policy = &v1alpha1.RoutePolicy{Timeout: dur("2s")}
	routing.Spec.Service.SessionAffinity = &v1alpha1.SessionAffinity{Header: &v1alpha1.HeaderAffinity{Name: "x-session"}}
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"weights, pauses and analysis", replicasCanary(), nil},
		{"header routes and mirror", with(canary()), []string{
			"spec.strategy.canary.steps[3].setHeaderRoute: Forbidden: the replicas router splits traffic by pod counts",
			"spec.strategy.canary.steps[4].setMirror: Forbidden: the replicas router splits traffic by pod counts behind one Service, which cannot copy requests",
			"spec.strategy.canary.steps[6].setHeaderRoute: Forbidden",
		}},
		{"routing objects, policy and affinity", routing, []string{
			"spec.service.virtualService: Forbidden: the replicas router writes no Istio objects",
			"spec.service.destinationRule: Forbidden: the replicas router writes no Istio objects",
			"spec.service.policy: Forbidden: timeouts, retries and faults",
			"spec.service.sessionAffinity: Forbidden: a Service spreads connections",
		}},
		{"no pod labels to select", func() *v1alpha1.Rollout {
			r := replicasCanary()
			r.Spec.Template.Labels = nil
			return r
		}(), []string{"spec.template.metadata.labels: Required value: with the replicas router the Service named spec.service.name selects"}},
		{"blue/green preview", with(blueGreen()), []string{"spec.strategy.blueGreen.preview: Forbidden: a preview"}},
		{"dark release", with(darkRelease()), []string{"spec.strategy.darkRelease.match: Forbidden: a dark release"}},
		{"extra revision", func() *v1alpha1.Rollout {
			r := replicasCanary()
			r.Spec.Strategy.Canary.Steps = append(r.Spec.Strategy.Canary.Steps, v1alpha1.CanaryStep{SetRevision: &v1alpha1.RevisionStep{
				Name: "baseline", Weight: 10, Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromStable}}})
			return r
		}(), []string{"spec.strategy.canary.steps[5].setRevision: Forbidden: the replicas router runs the stable and canary revisions behind one Service"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, ValidateRollout(c.r), c.want)
		})
	}
}

// sluice validate warns at each setWeight step that spec.replicas cannot
// run exactly, naming the weight it runs and a count that would.
func TestReplicasWarnings(t *testing.T) {
	t.Parallel()
	withReplicas := func(n int32) *v1alpha1.Rollout {
		r := replicasCanary()
		r.Spec.Replicas = &n
		return r
	}
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"10 replicas run 10% and 50% exactly", withReplicas(10), nil},
		{"4 replicas: 10% is 25%", withReplicas(4), []string{
			"spec.strategy.canary.steps[0].setWeight: setWeight 10 with spec.replicas 4 runs 1 canary and 3 stable pods: 25% of the traffic, not 10% " +
				"(the replicas router approximates weights by pod counts); 10 replicas would run it exactly",
		}},
		{"3 replicas: 10% is 33%, 50% is 67%", withReplicas(3), []string{
			"spec.strategy.canary.steps[0].setWeight: setWeight 10 with spec.replicas 3 runs 1 canary and 2 stable pods: 33% of the traffic, not 10% " +
				"(the replicas router approximates weights by pod counts); 10 replicas would run it exactly",
			"spec.strategy.canary.steps[3].setWeight: setWeight 50 with spec.replicas 3 runs 2 canary and 1 stable pods: 67% of the traffic, not 50% " +
				"(the replicas router approximates weights by pod counts); 4 replicas would run it exactly",
		}},
		{"another router: no warning", func() *v1alpha1.Rollout {
			r := withReplicas(4)
			r.Spec.Service.Routers = []v1alpha1.Router{{Istio: &v1alpha1.IstioRouter{}}}
			return r
		}(), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, w := range warningsOf(t, c.r) {
				got = append(got, fmt.Sprintf("%s: %s", w.Field, w.Message))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("warnings:\n got  %q\n want %q", got, c.want)
			}
		})
	}
}
