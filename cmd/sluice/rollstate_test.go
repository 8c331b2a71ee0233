package main

import (
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// status -w ends on what it waits for: it keeps waiting while a rollout
// runs and fails on an abort or on a rejected plan.
func TestRollState(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		st               v1alpha1.RolloutStatus
		rolling, aborted bool
	}{
		{"healthy", v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseHealthy}, false, false},
		{"rolling", v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, CanaryRevision: "v2"}, true, false},
		{"aborted", v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseDegraded, CanaryRevision: "v2", Abort: &v1alpha1.AbortStatus{}}, false, true},
		{"stable plan rejected", v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseDegraded}, false, true},
		{"stable plan rejected while v2 waits for a window", v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseDegraded, CanaryRevision: "v2"}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s rollState
			s.add(tc.st)
			if s.rolling != tc.rolling || s.aborted != tc.aborted {
				t.Errorf("rolling %v aborted %v, want %v %v", s.rolling, s.aborted, tc.rolling, tc.aborted)
			}
		})
	}
}
