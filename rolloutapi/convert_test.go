package rolloutapi

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestFromRollout(t *testing.T) {
	t.Parallel()
	w := int32(20)
	for _, tc := range []struct {
		strategy v1alpha1.Strategy
		want     string
	}{
		{v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{{SetWeight: &w}}}}, "canary"},
		{v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{}}, "blueGreen"},
		{v1alpha1.Strategy{DarkRelease: &v1alpha1.DarkReleaseStrategy{}}, "darkRelease"},
		{v1alpha1.Strategy{}, "-"},
	} {
		ro := &v1alpha1.Rollout{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec:       v1alpha1.RolloutSpec{Strategy: tc.strategy},
			Status:     v1alpha1.RolloutStatus{Phase: v1alpha1.PhasePaused, StepDisplay: "1/2"},
		}
		p := &plan.Plan{Version: "v1"}
		got := FromRollout(ro, p)
		labels, _ := engine.StepLabels(tc.strategy)
		if got.Key() != "shop/web" || got.Strategy != tc.want || !slices.Equal(got.Steps, labels) ||
			got.Plan != p || got.Status.StepDisplay != "1/2" {
			t.Errorf("FromRollout(%s) = %+v; want strategy %s, steps %v, the plan and the status", tc.want, got, tc.want, labels)
		}
	}
}

func TestResponseOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		result  string
		refused bool
	}{
		{"paused", false},
		{"resumed: measuring again with new analysis runs", false},
		{"refused: the rollout is not aborted", true},
		{"refused: deployment window closed (weekend)", true},
	} {
		got := ResponseOf(v1alpha1.CommandRecord{ID: "c1", Kind: v1alpha1.CommandPause, By: "alice", Result: tc.result})
		if got.ID != "c1" || got.Kind != v1alpha1.CommandPause || got.Result != tc.result || got.Refused != tc.refused {
			t.Errorf("ResponseOf(%q) = %+v, want refused %v", tc.result, got, tc.refused)
		}
	}
}
