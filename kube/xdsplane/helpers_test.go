package xdsplane

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newRollout is a controller-mode canary Rollout of image whose service
// is named after it and routes host: 30%, pause, 80%, pause.
func newRollout(ns, name, host, image string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: name, Hosts: []string{host}, Port: 9080},
			Replicas: ptr.To[int32](3),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](30)}, {Pause: &v1alpha1.PauseStep{}},
				{SetWeight: ptr.To[int32](80)}, {Pause: &v1alpha1.PauseStep{}},
			}}},
		},
	}
}

// advance plays the leader: it steps the engine on ro's status, with
// every replica ready, every plan acknowledged and every pause promoted,
// until the canary weight is weight (0: the stable revision's steady
// state), and returns the plan of that status. Only the status changes;
// writing it to the API server is the caller's business.
func advance(t testing.TB, ro *v1alpha1.Rollout, weight int32) plan.Plan {
	t.Helper()
	// Later calls continue later: the engine's clock never goes back.
	now := time.Now()
	for i := range 20 {
		obs := engine.Observations{Workload: &engine.Workload{StableAvailable: 3, CanaryAvailable: 3}}
		if v := ro.Status.Traffic.PlanVersion; v != "" {
			obs.DataPlane = engine.DataPlane{Version: v, State: engine.AckAcknowledged}
		}
		if ro.Status.Phase == v1alpha1.PhasePaused {
			obs.Commands = []engine.Command{{ID: fmt.Sprintf("promote-%d-%d", now.Unix(), i), Kind: v1alpha1.CommandPromote, By: "test"}}
		}
		out, err := engine.Step(engine.Input{Rollout: ro, Observations: obs, Now: now.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatalf("step rollout %s: %v", ro.Name, err)
		}
		ro.Status = out.Status
		if out.Status.Traffic.CanaryWeight == weight && (weight > 0 || out.Status.Phase == v1alpha1.PhaseHealthy) {
			return out.Plan
		}
	}
	t.Fatalf("rollout %s never reached %d%%: phase %s, weight %d", ro.Name, weight, ro.Status.Phase, ro.Status.Traffic.CanaryWeight)
	return plan.Plan{}
}

// rolloutAt is a Rollout in memory, at resourceVersion rv, whose status
// routes weight to a second revision, and that status's plan.
func rolloutAt(t testing.TB, ns, name, host string, weight int32, rv string) (*v1alpha1.Rollout, plan.Plan) {
	t.Helper()
	ro := newRollout(ns, name, host, "v1")
	advance(t, ro, 0)
	ro.Spec.Template.Spec.Containers[0].Image = "v2"
	p := advance(t, ro, weight)
	ro.ResourceVersion = rv
	return ro, p
}
