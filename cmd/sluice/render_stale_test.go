package main

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// `sluice status` says which xDS nodes are stale and what the step does
// about them, escaping their ids whoever wrote the status.
func TestTrafficLineShowsStaleNodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sn   *v1alpha1.StaleNodesStatus
		want []string
	}{
		{"none", nil, nil},
		{"held", &v1alpha1.StaleNodesStatus{Count: 7, Nodes: []string{"sidecar-1\x1b[2J", "sidecar-2"}},
			[]string{"7 stale data-plane node(s), holding the step: sidecar-1\\x1b[2J, sidecar-2 and 5 more"}},
		{"excluded", &v1alpha1.StaleNodesStatus{Count: 1, Nodes: []string{"grpc-9"}, Excluded: true},
			[]string{"1 stale data-plane node(s), left out of the count: grpc-9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			line := trafficLine(v1alpha1.TrafficStatus{PlanVersion: "abcdef0123", StaleNodes: tc.sn})
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("traffic line %q, want %q", line, w)
				}
			}
			if strings.Contains(line, "\x1b") || (tc.sn == nil && strings.Contains(line, "stale")) {
				t.Errorf("traffic line %q", line)
			}
		})
	}
}

func TestTrafficLineShowsExtraRevisions(t *testing.T) {
	t.Parallel()
	line := trafficLine(v1alpha1.TrafficStatus{
		StableWeight: 50, CanaryWeight: 40, Routes: []string{"revision-jason"},
		Subsets: []v1alpha1.SubsetStatus{{Name: "stable", Revision: "v1", Weight: 50}, {Name: "canary", Revision: "v3", Weight: 40}, {Name: "jason", Revision: "v2", Weight: 10}},
	})
	if want := "stable 50% / canary 40% / jason (v2) 10%, match routes: revision-jason"; line != want {
		t.Errorf("traffic line %q, want %q", line, want)
	}
}
