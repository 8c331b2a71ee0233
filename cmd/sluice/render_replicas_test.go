package main

import (
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// With the replicas router (no router) `sluice status` shows the weight
// the pods give and how many run each side, and that no data plane
// acknowledges the plan.
func TestTrafficLineShowsPodSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tr   v1alpha1.TrafficStatus
		want string
	}{
		{"10% of 4 replicas", v1alpha1.TrafficStatus{StableWeight: 75, CanaryWeight: 25, PlanVersion: "0f5594667a", AcknowledgedVersion: "0f5594667a",
			Replicas: &v1alpha1.ReplicaSplitStatus{Weight: 10, AchievedWeight: 25, Canary: 1, Stable: 3}},
			"stable 75% / canary 25%, by pods: setWeight 10 → 1 of 4 pods  (plan 0f559466 in force, no router)"},
		{"no rollout", v1alpha1.TrafficStatus{StableWeight: 100, PlanVersion: "887adb9e11", AcknowledgedVersion: "887adb9e11",
			Replicas: &v1alpha1.ReplicaSplitStatus{Stable: 10}},
			"stable 100% / canary 0%, by pods: 10 stable  (plan 887adb9e in force, no router)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := trafficLine(tc.tr); got != tc.want {
				t.Errorf("traffic line\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}
