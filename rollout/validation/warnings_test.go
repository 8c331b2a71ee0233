package validation

import (
	"slices"
	"strings"
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
			var got []string
			for _, w := range warningsOf(t, c.r) {
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

func TestAffinityWarnings(t *testing.T) {
	t.Parallel()
	withAffinity := func(r *v1alpha1.Rollout, a *v1alpha1.SessionAffinity) *v1alpha1.Rollout {
		r.Spec.Strategy.Canary.Steps[4] = v1alpha1.CanaryStep{SetWeight: new(int32(50))} // no mirror warning
		r.Spec.Service.SessionAffinity = a
		return r
	}
	header := &v1alpha1.SessionAffinity{Header: &v1alpha1.HeaderAffinity{Name: "x-session"}}
	cookie := &v1alpha1.SessionAffinity{Cookie: &v1alpha1.CookieAffinity{Name: "session"}}
	cases := []struct {
		name string
		r    *v1alpha1.Rollout
		want []string
	}{
		{"header, standalone: pinned everywhere", withAffinity(standaloneCanary(), header), nil},
		{"cookie, standalone: gRPC is not pinned", withAffinity(standaloneCanary(), cookie), []string{CookieAffinityGRPCWarning}},
		{"header, controller: Istio is not pinned", withAffinity(canary(), header), []string{HeaderAffinityIstioWarning}},
		{"cookie, controller: gRPC and Istio", withAffinity(canary(), cookie), []string{CookieAffinityGRPCWarning, CookieAffinityIstioWarning}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, w := range warningsOf(t, c.r) {
				got = append(got, w.Message)
				if !strings.HasPrefix(w.Field, "spec.service.sessionAffinity.") {
					t.Errorf("warning at %s", w.Field)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("warnings %q, want %q", got, c.want)
			}
		})
	}
}

// standaloneCanary is canary() with a backend instead of a pod template.
func standaloneCanary() *v1alpha1.Rollout {
	r := canary()
	r.Spec.Template, r.Spec.Replicas = nil, nil
	r.Spec.Backend = &v1alpha1.Backend{Version: "v2", Endpoints: []string{"10.0.0.2:9080"}}
	return r
}

// warningsOf is the warnings of a fixture, which must be valid.
func warningsOf(t *testing.T, r *v1alpha1.Rollout) []Warning {
	t.Helper()
	if errs := ValidateRollout(r); len(errs) > 0 {
		t.Fatalf("fixture invalid: %v", errs)
	}
	return RolloutWarnings(r)
}
