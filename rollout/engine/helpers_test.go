package engine

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func i32(v int32) *int32   { return &v }
func str(v string) *string { return &v }
func dur(d time.Duration) *metav1.Duration {
	return &metav1.Duration{Duration: d}
}

func weight(w int32) v1alpha1.CanaryStep { return v1alpha1.CanaryStep{SetWeight: i32(w)} }
func pauseFor(d time.Duration) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{Duration: dur(d)}}
}
func pauseForever() v1alpha1.CanaryStep { return v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}} }
func analysis(tmpl string) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Analysis: analysisStep(tmpl)}
}
func analysisStep(tmpl string) *v1alpha1.AnalysisStep {
	return &v1alpha1.AnalysisStep{Templates: []v1alpha1.TemplateRef{{Name: tmpl}}}
}
func headerRoute(name, header, value string) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: name, Match: []v1alpha1.RouteMatch{jason(header, value)}}}
}
func jason(header, value string) v1alpha1.RouteMatch {
	return v1alpha1.RouteMatch{Headers: []v1alpha1.HeaderMatch{{Name: header, Exact: str(value)}}}
}

// standalone returns a Rollout whose stable revision v1 is already serving
// and whose spec asks for version.
func standalone(version string, st v1alpha1.Strategy) *v1alpha1.Rollout {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080},
			Backend:  &v1alpha1.Backend{Version: version, Endpoints: []string{"127.0.0.1:9001"}},
			Strategy: st,
		},
	}
	ro.Status = v1alpha1.RolloutStatus{
		StableRevision: "v1",
		StableBackend:  &v1alpha1.Backend{Version: "v1", Endpoints: []string{"127.0.0.1:9000"}},
	}
	return ro
}

func canary(steps ...v1alpha1.CanaryStep) v1alpha1.Strategy {
	return v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: steps}}
}

// controllerMode turns a standalone Rollout into one with a pod template
// and replicas, with v1's template hash as the stable revision.
func controllerMode(ro *v1alpha1.Rollout, image string, replicas int32) *v1alpha1.Rollout {
	ro.Spec.Backend = nil
	ro.Spec.Replicas = i32(replicas)
	ro.Spec.Template = &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	v1 := ro.DeepCopy()
	v1.Spec.Template.Spec.Containers[0].Image = "reviews:v1"
	rev, err := DesiredRevision(&v1.Spec)
	if err != nil {
		panic(err)
	}
	ro.Status.StableRevision, ro.Status.StableBackend = rev, nil
	return ro
}

// harness drives the engine like an adapter would: it persists the status,
// remembers the published plan, and lets the test script observations.
type harness struct {
	t   *testing.T
	ro  *v1alpha1.Rollout
	now time.Time
	out Output
	// level observations that persist between steps
	workload *Workload
	window   Window
}

func newHarness(t *testing.T, ro *v1alpha1.Rollout) *harness {
	t.Helper()
	h := &harness{t: t, ro: ro, now: t0}
	h.step(Observations{})
	h.warmup()
	return h
}

// warmup acknowledges the plan that adds the canary subset at 0%, which the
// first step waits for, if a rollout is starting.
func (h *harness) warmup() {
	h.t.Helper()
	if strings.Contains(h.ro.Status.Message, warmupMessage) {
		h.ack()
	}
}

func (h *harness) step(obs Observations) Output {
	h.t.Helper()
	if obs.Workload == nil {
		obs.Workload = h.workload
	}
	if !obs.Window.Closed {
		obs.Window = h.window
	}
	out, err := Step(Input{Rollout: h.ro.DeepCopy(), Observations: obs, Now: h.now})
	if err != nil {
		h.t.Fatalf("Step: %v", err)
	}
	if err := out.Plan.Check(); err != nil {
		h.t.Fatalf("plan invariant broken: %v", err)
	}
	h.ro.Status = out.Status
	h.out = out
	return out
}

// ack reports the data plane acknowledging the last published plan.
func (h *harness) ack() Output {
	h.t.Helper()
	return h.step(Observations{DataPlane: DataPlane{Version: h.out.Plan.Version, State: AckAcknowledged}})
}

func (h *harness) nack(msg string) Output {
	h.t.Helper()
	return h.step(Observations{DataPlane: DataPlane{Version: h.out.Plan.Version, State: AckRejected, Message: msg}})
}

func (h *harness) analysis(name string, phase v1alpha1.AnalysisPhase, msg string) Output {
	h.t.Helper()
	return h.step(Observations{Analysis: []AnalysisObservation{{Name: name, Phase: phase, Message: msg}}})
}

func (h *harness) command(id string, kind v1alpha1.CommandKind) Output {
	h.t.Helper()
	return h.step(Observations{Commands: []Command{{ID: id, Kind: kind, By: "alice"}}})
}

func (h *harness) advance(d time.Duration) Output {
	h.t.Helper()
	h.now = h.now.Add(d)
	return h.step(Observations{})
}

func (h *harness) setVersion(v string) {
	h.ro.Spec.Backend = &v1alpha1.Backend{Version: v, Endpoints: []string{"127.0.0.1:9001"}}
	h.ro.Generation++
}

func (h *harness) stepIndex() int {
	if h.ro.Status.CurrentStepIndex == nil {
		return -1
	}
	return int(*h.ro.Status.CurrentStepIndex)
}

func (h *harness) wantStep(i int) {
	h.t.Helper()
	if got := h.stepIndex(); got != i {
		h.t.Fatalf("step index = %d, want %d (phase %s: %s)", got, i, h.ro.Status.Phase, h.ro.Status.Message)
	}
}

func (h *harness) wantPhase(p v1alpha1.Phase) {
	h.t.Helper()
	if h.ro.Status.Phase != p {
		h.t.Fatalf("phase = %s (%s), want %s", h.ro.Status.Phase, h.ro.Status.Message, p)
	}
}

func (h *harness) wantWeight(canary int32) {
	h.t.Helper()
	for _, host := range h.out.Plan.Hosts {
		if host.Name != h.ro.Spec.Service.Hosts[0] {
			continue
		}
		if got := host.Weight(plan.Canary); got != canary {
			h.t.Fatalf("canary weight on %s = %d, want %d", host.Name, got, canary)
		}
	}
}

// wantAllStable checks the abort invariant: 100% stable, no canary routes.
func (h *harness) wantAllStable() {
	h.t.Helper()
	for _, host := range h.out.Plan.Hosts {
		for _, r := range host.Routes {
			for _, d := range r.Destinations {
				if d.Subset != plan.Stable {
					h.t.Fatalf("host %s route %s sends %d%% to %s; want all stable", host.Name, r.Name, d.Weight, d.Subset)
				}
			}
			if r.Mirror != nil {
				h.t.Fatalf("host %s route %s mirrors to %s", host.Name, r.Name, r.Mirror.Subset)
			}
		}
	}
}

func (h *harness) routeNames() []string {
	var out []string
	for _, r := range h.out.Plan.Hosts[0].Routes {
		out = append(out, r.Name)
	}
	return out
}

func (h *harness) actions(kind ActionKind) []Action {
	var out []Action
	for _, a := range h.out.Actions {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

func (h *harness) runPhase(name string) v1alpha1.AnalysisPhase {
	for _, r := range h.ro.Status.Analysis {
		if r.Name == name {
			return r.Phase
		}
	}
	return ""
}
