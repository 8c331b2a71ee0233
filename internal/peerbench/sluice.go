package peerbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Sluice is `sluice controller`, built from this tree, with the
// configuration docs/controller.md gives for production less what one
// replica on a workstation cannot have: default workers (10) and
// client-side rate limit (QPS 50, burst 1,000), Istio writing on, leader
// election off (as for Argo Rollouts), xDS on loopback in plaintext (no
// proxy connects in this benchmark, so a step is acknowledged when the
// VirtualService write is accepted, as Argo Rollouts counts it too).
type Sluice struct {
	Bin string // path of sluice
	// Config is added to the configuration file (YAML lines, e.g.
	// "kubeAPI:\n  qps: -1").
	Config string
}

func (Sluice) Name() string { return "sluice" }

// Objects: the Rollout, naming the VirtualService and DestinationRule
// Sluice renders and owns (no Git source declares them), and the Service.
func (Sluice) Objects(ns, app, image string) []client.Object {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{
				Name:            app,
				Hosts:           []string{app},
				Port:            8080,
				VirtualService:  &v1alpha1.VirtualServiceRef{Name: app},
				DestinationRule: &v1alpha1.ObjectRef{Name: app},
			},
			Replicas: ptr.To(Canary.Replicas),
			Template: ptr.To(podTemplate(app, image)),
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To(Canary.FirstWeight)},
				{Pause: &v1alpha1.PauseStep{Duration: &metav1.Duration{Duration: Canary.Pause}}},
				{SetWeight: ptr.To(Canary.SecondWeight)},
				{Pause: &v1alpha1.PauseStep{Duration: &metav1.Duration{Duration: Canary.Pause}}},
			}}},
			ScaleDownDelaySeconds: ptr.To(Canary.ScaleDownSeconds),
		},
	}
	return []client.Object{service(ns, app), ro}
}

func (Sluice) RolloutList() client.ObjectList { return &v1alpha1.RolloutList{} }

func (Sluice) SetImage(ctx context.Context, c client.Client, ns, name, image string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
	return mergePatch(ctx, c, &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, patch)
}

// Done: Healthy, the plan in force acknowledged, the stable revision the
// spec's, no canary and no scale-down pending, and only the ReplicaSet of
// image has replicas.
func (Sluice) Done(obj client.Object, rs []*appsv1.ReplicaSet, image string) (bool, string) {
	ro := obj.(*v1alpha1.Rollout)
	rev, err := engine.DesiredRevision(&ro.Spec)
	tr := ro.Status.Traffic
	switch {
	case err != nil:
		return false, err.Error()
	case ro.Status.Phase != v1alpha1.PhaseHealthy:
		return false, fmt.Sprintf("phase %s, step %s: %s", ro.Status.Phase, ro.Status.StepDisplay, ro.Status.Message)
	case tr.PlanVersion == "" || tr.AcknowledgedVersion != tr.PlanVersion:
		return false, "plan not acknowledged"
	case ro.Status.StableRevision != rev || ro.Status.CanaryRevision != "" || ro.Status.ScaleDown != nil:
		return false, fmt.Sprintf("stable %s (want %s), canary %q, scale-down pending %v",
			ro.Status.StableRevision, rev, ro.Status.CanaryRevision, ro.Status.ScaleDown != nil)
	}
	return onlyImage(rs, image)
}

func (s Sluice) Start(_ context.Context, kubeconfig, dir string, log io.Writer) (*Process, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	// PEERBENCH_PPROF serves Go's profiles at that loopback address, to
	// take a heap profile at the peak ("0", the default, serves none).
	pprof := os.Getenv("PEERBENCH_PPROF")
	if pprof == "" {
		pprof = "0"
	}
	cfg := fmt.Sprintf(`namespace: sluice-system
stateDir: %s
leaderElection:
  enabled: false
http:
  metricsAddress: 127.0.0.1:%d
  probeAddress: "0"
  webhookAddress: "0"
  insecurePprofAddress: %q
xds:
  address: 127.0.0.1:0
  insecurePlaintext: true
%s`, filepath.Join(dir, "state"), port, pprof, s.Config)
	path := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := Start(s.Name(), s.Bin, []string{"controller", "--config", path, "--kubeconfig", kubeconfig}, nil, log)
	if err != nil {
		return nil, err
	}
	p.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	return p, nil
}

// Measure reads controller-runtime's reconcile histogram of the Rollout
// controller from /metrics before and after: p50/p99 are interpolated
// inside its buckets (5, 10, 25, 50, 100, 150, ... ms).
func (Sluice) Measure(ctx context.Context, p *Process) (func() (Latency, error), error) {
	url := p.MetricsURL
	match := map[string]string{"controller": "rollout"}
	before, err := Scrape(ctx, url)
	if err != nil {
		return nil, err
	}
	h0 := HistogramOf(before, "controller_runtime_reconcile_time_seconds", match)
	return func() (Latency, error) {
		after, err := Scrape(ctx, url)
		if err != nil {
			return Latency{}, err
		}
		h := HistogramOf(after, "controller_runtime_reconcile_time_seconds", match).Since(h0)
		return Latency{N: int(h.Count()), P50: 1000 * h.Quantile(0.50), P99: 1000 * h.Quantile(0.99),
			Source: "controller_runtime_reconcile_time_seconds, interpolated in its buckets"}, nil
	}, nil
}
