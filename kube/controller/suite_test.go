package controller

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One envtest control plane (real kube-apiserver + etcd), with Istio's
// CRDs for the tests that publish through the Istio writer, serves every
// test of the package. There is no kubelet or kube-controller-manager:
// tests mark ReplicaSets' replicas available themselves, and write
// AnalysisRun status as an analysis controller would.
var env = kubetest.NewEnv(istio.AddToScheme).WithIstioCRDs()

func TestMain(m *testing.M) {
	// The manager tests log through controller-runtime; keep test output
	// to what the tests say.
	ctrl.SetLogger(logr.Discard())
	os.Exit(env.Run(m))
}

// cluster returns a client of the shared API server with the Sluice CRDs.
// It skips the test when the binaries are missing, except with CI=true,
// where that fails: CI must never pass by skipping.
func cluster(t *testing.T) client.WithWatch { return env.Client(t) }

func newNamespace(t *testing.T, c client.Client) string {
	return kubetest.Namespace(t, c, "sluice-ctrl-")
}

// fakePlane is the data plane of the tests: it remembers what was
// published and, unless held, acknowledges every published version, as
// proxies that ACK everything would.
type fakePlane struct {
	mu        sync.Mutex
	published map[types.NamespacedName][]plan.Plan
	hold      bool
	nack      string
}

func newFakePlane() *fakePlane {
	return &fakePlane{published: map[types.NamespacedName][]plan.Plan{}}
}

func (f *fakePlane) Publish(_ context.Context, ro *v1alpha1.Rollout, p plan.Plan) error {
	if err := p.Check(); err != nil {
		return fmt.Errorf("invalid plan: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := client.ObjectKeyFromObject(ro)
	if ps := f.published[key]; len(ps) == 0 || ps[len(ps)-1].Version != p.Version {
		f.published[key] = append(ps, p)
	}
	return nil
}

func (f *fakePlane) Acknowledgement(_ context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := f.published[client.ObjectKeyFromObject(ro)]
	switch {
	case f.hold || !slices.ContainsFunc(ps, func(p plan.Plan) bool { return p.Version == version }):
		return engine.DataPlane{Version: version}, nil
	case f.nack != "":
		return engine.DataPlane{Version: version, State: engine.AckRejected, Message: f.nack}, nil
	}
	return engine.DataPlane{Version: version, State: engine.AckAcknowledged}, nil
}

// setHold makes the plane answer every plan as pending (true), as proxies
// that have not applied it yet.
func (f *fakePlane) setHold(hold bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = hold
}

// last is the last plan published for the Rollout.
func (f *fakePlane) last(ro *v1alpha1.Rollout) (plan.Plan, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := f.published[client.ObjectKeyFromObject(ro)]
	if len(ps) == 0 {
		return plan.Plan{}, false
	}
	return ps[len(ps)-1], true
}

// events records Events in memory; unlike record.FakeRecorder it never
// blocks when many arrive.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) Event(_ runtime.Object, typ, reason, msg string) {
	e.mu.Lock()
	e.list = append(e.list, typ+" "+reason+" "+msg)
	e.mu.Unlock()
}

func (e *events) Eventf(o runtime.Object, typ, reason, format string, args ...any) {
	e.Event(o, typ, reason, fmt.Sprintf(format, args...))
}

func (e *events) AnnotatedEventf(o runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	e.Eventf(o, typ, reason, format, args...)
}

func (e *events) find(prefix string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.list {
		if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
			return s, true
		}
	}
	return "", false
}

func (e *events) count(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.list {
		if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

// newRollout is a controller-mode canary Rollout of image with steps.
func newRollout(ns, name, image string, steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: name, Hosts: []string{name + ".example.svc.cluster.local"}, Port: 8080},
			Replicas: ptr.To[int32](3),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
			Strategy:              v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: steps}},
			ScaleDownDelaySeconds: ptr.To[int32](1),
		},
	}
}

func setWeight(w int32) v1alpha1.CanaryStep { return v1alpha1.CanaryStep{SetWeight: ptr.To(w)} }
func pauseUntilPromoted() v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}}
}
func analysisStep(template string) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Analysis: &v1alpha1.AnalysisStep{Templates: []v1alpha1.TemplateRef{{Name: template}}}}
}

// newTemplate is an AnalysisTemplate with one Prometheus metric; nothing
// queries it here, the tests write the runs' results.
func newTemplate(ns, name string) *v1alpha1.AnalysisTemplate {
	return &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{{
			Name:             "success-rate",
			Interval:         &metav1.Duration{Duration: 10 * time.Second},
			SuccessCondition: "result[0] >= 0.99",
			Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
				Query: `sum(rate(requests_total{revision="{{args.canaryRevision}}",code!~"5.."}[1m])) / sum(rate(requests_total{revision="{{args.canaryRevision}}"}[1m]))`,
			}},
		}}},
	}
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.list...)
}
