package validation

import (
	"slices"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A setMirror step warns that proxyless gRPC clients are not mirrored, at
// the step's own field, in canary and dark-release steps alike; removing a
// mirror (0%) and strategies without one warn of nothing.
func TestMirrorWarnings(t *testing.T) {
	t.Parallel()
	mirror := func(p int32) v1alpha1.CanaryStep {
		return v1alpha1.CanaryStep{SetMirror: &v1alpha1.MirrorStep{Percent: p}}
	}
	unmirrored := canary()
	unmirrored.Spec.Strategy.Canary.Steps[4] = mirror(0)
	dark := darkRelease()
	dark.Spec.Strategy.DarkRelease.Steps = append(dark.Spec.Strategy.DarkRelease.Steps, mirror(10), mirror(0))
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"canary", canary(), []string{"spec.strategy.canary.steps[4].setMirror"}},
		{"dark release", dark, []string{"spec.strategy.darkRelease.steps[2].setMirror"}},
		{"blue/green", blueGreen(), nil},
		{"mirror set to 0 only", unmirrored, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if errs := ValidateRollout(c.r); len(errs) > 0 {
				t.Fatalf("fixture invalid: %v", errs)
			}
			var got []string
			for _, w := range RolloutWarnings(c.r) {
				got = append(got, w.Field)
				if w.Message != MirrorWarning {
					t.Errorf("%s: message %q", w.Field, w.Message)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("warnings at %v, want %v", got, c.want)
			}
		})
	}
}
