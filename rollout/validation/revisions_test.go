package validation

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestExtraRevisions(t *testing.T) {
	t.Parallel()
	rev := func(r v1alpha1.RevisionStep) v1alpha1.CanaryStep { return v1alpha1.CanaryStep{SetRevision: &r} }
	v2 := &v1alpha1.Backend{Version: "v-two", Endpoints: []string{"10.0.0.9:9080"}}
	jason := rev(v1alpha1.RevisionStep{Name: "jason", Backend: v2, Match: jasonMatch()})
	steps := func(r *v1alpha1.Rollout, s ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
		r.Spec.Strategy.Canary.Steps = s
		r.Spec.Analysis = nil
		return r
	}
	compare := func(baseline string) v1alpha1.CanaryStep {
		a := analysis("compare")
		a.Baseline = baseline
		return v1alpha1.CanaryStep{Analysis: a}
	}
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"bookinfo: v2 pinned for jason, canary at 50", steps(standaloneCanary(), jason, v1alpha1.CanaryStep{SetWeight: new(int32(50))}), nil},
		{"baseline with weight, compared, stopped", steps(standaloneCanary(),
			v1alpha1.CanaryStep{SetWeight: new(int32(10))},
			rev(v1alpha1.RevisionStep{Name: "baseline", Backend: &v1alpha1.Backend{Version: "v1-b", Endpoints: []string{"10.0.0.8:9080"}}, Weight: 10, Duration: dur("10m")}),
			compare("baseline"),
			rev(v1alpha1.RevisionStep{Name: "baseline"})), nil},
		{"controller template from stable", steps(canary(),
			rev(v1alpha1.RevisionStep{Name: "baseline", Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromStable}, Weight: 5}),
			v1alpha1.CanaryStep{SetWeight: new(int32(5))}), nil},
		{"weights over 100", steps(standaloneCanary(), jason, rev(v1alpha1.RevisionStep{Name: "exp", Backend: &v1alpha1.Backend{Version: "x", Endpoints: []string{"10.0.0.7:1"}}, Weight: 60}),
			v1alpha1.CanaryStep{SetWeight: new(int32(50))}),
			[]string{"spec.strategy.canary.steps[2].setWeight: Invalid value: 50: weights add up to more than 100 at this step (canary 50, exp 60, jason 0)"}},
		{"stop of a revision not running", steps(standaloneCanary(), rev(v1alpha1.RevisionStep{Name: "jason"})),
			[]string{`spec.strategy.canary.steps[0].setRevision.name: Invalid value: "jason": without backend or template this step stops an extra revision, but none of this name runs here (none runs)`}},
		{"a stop sets nothing else", steps(standaloneCanary(), jason, rev(v1alpha1.RevisionStep{Name: "jason", Weight: 5})),
			[]string{"spec.strategy.canary.steps[1].setRevision: Forbidden"}},
		{"backend in controller mode", steps(canary(), jason),
			[]string{"spec.strategy.canary.steps[0].setRevision.backend: Forbidden: backend runs a revision in standalone mode"}},
		{"template in standalone mode", steps(standaloneCanary(), rev(v1alpha1.RevisionStep{Name: "b", Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromStable}})),
			[]string{"spec.strategy.canary.steps[0].setRevision.template: Forbidden"}},
		{"the canary's version", steps(standaloneCanary(), rev(v1alpha1.RevisionStep{Name: "b", Backend: &v1alpha1.Backend{Version: "v2", Endpoints: []string{"10.0.0.7:1"}}})),
			[]string{`spec.strategy.canary.steps[0].setRevision.backend.version: Invalid value: "v2": is the canary's version`}},
		{"reserved name and unknown container", steps(canary(), rev(v1alpha1.RevisionStep{Name: "canary", Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromCanary, Images: map[string]string{"ratings": "r:1"}}})),
			[]string{`spec.strategy.canary.steps[0].setRevision.name: Invalid value: "canary"`, `spec.strategy.canary.steps[0].setRevision.template.images[ratings]: Not found`}},
		{"a routed revision without replicas", steps(canary(),
			rev(v1alpha1.RevisionStep{Name: "exp", Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromCanary}, Replicas: new(int32(0)), Weight: 5})),
			[]string{"spec.strategy.canary.steps[0].setRevision.replicas: Invalid value: 0: a revision that gets traffic (weight or match) needs at least 1 replica"}},
		{"baseline not running", steps(standaloneCanary(), compare("baseline")),
			[]string{`spec.strategy.canary.steps[0].analysis.baseline: Invalid value: "baseline": must be stable, canary or an extra revision running at this step (none runs)`}},
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
