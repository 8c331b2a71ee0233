package peerbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Argo is Argo Rollouts' controller (bin/rollouts-controller), as its
// install manifest runs it: default workers (10 rollout threads), default
// client-side rate limit (QPS 40, burst 80), info logs, here in JSON so
// that its per-reconcile log lines can be read. Leader election is off,
// as it is for Sluice: one replica each.
type Argo struct {
	Bin string // path of rollouts-controller
	// Args are added to the command line (e.g. --qps, --burst).
	Args []string
}

func (Argo) Name() string { return "argo-rollouts" }

const argoAPI = "argoproj.io/v1alpha1"

// ArgoNamespace is the controller's own namespace (its kubeconfig's):
// where it looks for its configuration and notification ConfigMaps.
const ArgoNamespace = "argo-rollouts"

// Objects: the Rollout with Istio subset-level traffic routing (the
// DestinationRule's stable and canary subsets, weights in the
// VirtualService's named route), the VirtualService and DestinationRule
// it names, and the Service they route to, as Argo Rollouts' Istio guide
// has them.
func (Argo) Objects(ns, app, image string) []client.Object {
	ro := unstructuredOf(argoAPI, "Rollout", ns, app)
	tmpl, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(ptr.To(podTemplate(app, image)))
	delete(tmpl, "creationTimestamp")
	if md, ok := tmpl["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	ro.Object["spec"] = map[string]any{
		"replicas": int64(Canary.Replicas),
		"selector": map[string]any{"matchLabels": map[string]any{AppLabel: app}},
		"template": tmpl,
		"strategy": map[string]any{"canary": map[string]any{
			"scaleDownDelaySeconds": int64(Canary.ScaleDownSeconds),
			"trafficRouting": map[string]any{"istio": map[string]any{
				"virtualService": map[string]any{"name": app, "routes": []any{"primary"}},
				"destinationRule": map[string]any{
					"name": app, "canarySubsetName": "canary", "stableSubsetName": "stable",
				},
			}},
			"steps": []any{
				map[string]any{"setWeight": int64(Canary.FirstWeight)},
				map[string]any{"pause": map[string]any{"duration": Canary.Pause.String()}},
				map[string]any{"setWeight": int64(Canary.SecondWeight)},
				map[string]any{"pause": map[string]any{"duration": Canary.Pause.String()}},
			},
		}},
	}
	vs := unstructuredOf("networking.istio.io/v1", "VirtualService", ns, app)
	vs.Object["spec"] = map[string]any{
		"hosts": []any{app},
		"http": []any{map[string]any{
			"name": "primary",
			"route": []any{
				map[string]any{"destination": map[string]any{"host": app, "subset": "stable"}, "weight": int64(100)},
				map[string]any{"destination": map[string]any{"host": app, "subset": "canary"}, "weight": int64(0)},
			},
		}},
	}
	dr := unstructuredOf("networking.istio.io/v1", "DestinationRule", ns, app)
	dr.Object["spec"] = map[string]any{
		"host":    app,
		"subsets": []any{map[string]any{"name": "stable"}, map[string]any{"name": "canary"}},
	}
	return []client.Object{service(ns, app), dr, vs, ro}
}

func (Argo) RolloutList() client.ObjectList {
	l := &unstructured.UnstructuredList{}
	l.SetAPIVersion(argoAPI)
	l.SetKind("RolloutList")
	return l
}

func (Argo) SetImage(ctx context.Context, c client.Client, ns, name, image string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
	return mergePatch(ctx, c, unstructuredOf(argoAPI, "Rollout", ns, name), patch)
}

// Done: the Rollout is Healthy with its stable ReplicaSet the current pod
// template's, of the latest generation, and only that ReplicaSet, running
// image, has replicas.
func (Argo) Done(obj client.Object, rs []*appsv1.ReplicaSet, image string) (bool, string) {
	u := obj.(*unstructured.Unstructured)
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	stable, _, _ := unstructured.NestedString(u.Object, "status", "stableRS")
	current, _, _ := unstructured.NestedString(u.Object, "status", "currentPodHash")
	observed, _, _ := unstructured.NestedString(u.Object, "status", "observedGeneration")
	switch {
	case observed != strconv.FormatInt(u.GetGeneration(), 10):
		return false, fmt.Sprintf("status of generation %s, want %d", observed, u.GetGeneration())
	case phase != "Healthy":
		msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
		return false, fmt.Sprintf("phase %s: %s", phase, msg)
	case stable == "" || stable != current:
		return false, fmt.Sprintf("stable %s, current %s", stable, current)
	}
	return onlyImage(rs, image)
}

func (a Argo) Start(_ context.Context, kubeconfig, dir string, log io.Writer) (*Process, error) {
	metrics, err := FreePort()
	if err != nil {
		return nil, err
	}
	healthz, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig", kubeconfig,
		"--leader-elect=false",
		"--metricsPort", strconv.Itoa(metrics),
		"--healthzPort", strconv.Itoa(healthz),
		"--logformat", "json",
		"--loglevel", "info",
	}, a.Args...)
	return Start(a.Name(), a.Bin, args, nil, log)
}

// Measure reads Argo's own log line for each Rollout reconcile
// ("Reconciliation completed", with time_ms), the exact duration of every
// reconcile.
func (Argo) Measure(_ context.Context, p *Process) (func() (Latency, error), error) {
	var mu sync.Mutex
	var took []float64
	p.OnLine(func(line string) {
		if !strings.Contains(line, "Reconciliation completed") {
			return
		}
		var l struct {
			Msg     string  `json:"msg"`
			Rollout string  `json:"rollout"`
			TimeMS  float64 `json:"time_ms"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Rollout == "" {
			return
		}
		mu.Lock()
		took = append(took, l.TimeMS)
		mu.Unlock()
	})
	return func() (Latency, error) {
		p.OnLine(nil)
		mu.Lock()
		defer mu.Unlock()
		s := slices.Sorted(slices.Values(took))
		return Latency{N: len(s), P50: Percentile(s, 0.50), P99: Percentile(s, 0.99),
			Source: "its log line per reconcile (time_ms), exact"}, nil
	}, nil
}
