package peerbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ArgoIstiod is the peer pair as a traffic benchmark side: Argo Rollouts
// (bin/rollouts-controller) moves the weights of an Istio VirtualService
// and the subsets of its DestinationRule, as in its Istio guide, and
// istiod (bin/pilot-discovery, defaults) serves them to the proxyless
// gRPC clients through its gRPC generator (node metadata GENERATOR
// "grpc", what istio-agent's gRPC bootstrap sets). A release is a
// server-side apply of the Rollout with the new image, as Argo CD or Flux
// send it after their poll.
//
// The harness plays the ReplicaSet controller and the kubelet (World:
// a ReplicaSet's replicas are available 100 ms after the change that asks
// for them) and publishes each ReplicaSet with available replicas as an
// endpoint carrying its pod template's labels (so the DestinationRule's
// subsets select it) at the address of the backend running its image's tag.
// The endpoints are a ServiceEntry's, not EndpointSlices of Pods: every
// revision runs on this machine's one non-loopback address (the API
// server refuses loopback ones in EndpointSlices), and istiod keeps one
// endpoint per address and port name across a Service's EndpointSlices,
// which would hide one of the two revisions. istiod reads both kinds
// through its informers and pushes an endpoint change the same way.
type ArgoIstiod struct {
	Argo, Istiod string // binaries
	Cfg          *rest.Config
	Scheme       *runtime.Scheme
	Log          io.Writer

	c      client.Client
	ns     string
	plan   ReleasePlan
	dir    string
	cancel context.CancelFunc
	procs  []*Process
	world  *World
	wg     sync.WaitGroup
	rsTimes
}

func (*ArgoIstiod) Name() string { return "argo-istiod" }

// gitopsManager is the field manager of the user's objects: what Argo CD
// applies them with.
const gitopsManager = "argocd-controller"

// meshPort is the echo service's port, and grpcPortName its name.
const (
	meshPort     = 9080
	grpcPortName = "grpc"
)

func (a *ArgoIstiod) host() string { return "echo." + a.ns + ".svc.cluster.local" }

func (a *ArgoIstiod) Start(ctx context.Context, plan ReleasePlan) (string, string, error) {
	a.plan = plan
	var err error
	if a.c, err = client.New(noRateLimit(a.Cfg), client.Options{Scheme: a.Scheme}); err != nil {
		return "", "", err
	}
	for _, name := range []string{ArgoNamespace, "istio-system"} {
		if err := client.IgnoreAlreadyExists(a.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})); err != nil {
			return "", "", err
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "peer-traffic-"}}
	if err := a.c.Create(ctx, ns); err != nil {
		return "", "", err
	}
	a.ns = ns.Name
	if a.dir, err = os.MkdirTemp("", "peerbench-argo-istiod-"); err != nil {
		return "", "", err
	}
	for _, obj := range a.objects("echo:v1") {
		if err := a.c.Patch(ctx, obj, client.Apply, client.FieldOwner(gitopsManager), client.ForceOwnership); err != nil {
			return "", "", fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	if a.world, err = StartWorld(run, a.Cfg, a.Scheme, a.ns, 100*time.Millisecond); err != nil {
		return "", "", err
	}
	a.wg.Go(func() { a.publishEndpoints(run) })

	kubeconfig, err := kubeconfigIn(a.Cfg, a.dir, ArgoNamespace)
	if err != nil {
		return "", "", err
	}
	istiod, xdsAddr, err := StartIstiod(a.Istiod, a.dir, a.Log)
	if err != nil {
		return "", "", err
	}
	a.procs = append(a.procs, istiod)
	argo, err := Argo{Bin: a.Argo}.Start(ctx, kubeconfig, a.dir, a.Log)
	if err != nil {
		return "", "", err
	}
	a.procs = append(a.procs, argo)
	// v1 deployed: healthy, and its endpoint published.
	err = a.world.WaitAll(ctx, 1, 3*time.Minute, Argo{}.RolloutList(), AppLabel, func(obj client.Object, rs []*appsv1.ReplicaSet) (bool, string) {
		return Argo{}.Done(obj, rs, "echo:v1")
	})
	if err != nil {
		return "", "", fmt.Errorf("argo rollouts: v1: %w\n%s", err, argo.Tail())
	}
	return xdsAddr, fmt.Sprintf("%s:%d", a.host(), meshPort), nil
}

// objects are what the user keeps in Git: the Rollout with image, the
// ServiceEntry naming the service (its endpoints are the harness's), the
// DestinationRule with the two subsets and the VirtualService with the
// weighted route Argo Rollouts edits, and the AnalysisTemplate.
func (a *ArgoIstiod) objects(image string) []*unstructured.Unstructured {
	host := a.host()
	se := unstructuredOf("networking.istio.io/v1", "ServiceEntry", a.ns, "echo")
	se.Object["spec"] = map[string]any{
		"hosts":      []any{host},
		"location":   "MESH_INTERNAL",
		"resolution": "STATIC",
		"ports":      []any{map[string]any{"number": int64(meshPort), "name": grpcPortName, "protocol": "GRPC"}},
	}
	dr := unstructuredOf("networking.istio.io/v1", "DestinationRule", a.ns, "echo")
	dr.Object["spec"] = map[string]any{
		"host":    host,
		"subsets": []any{map[string]any{"name": "stable"}, map[string]any{"name": "canary"}},
	}
	vs := unstructuredOf("networking.istio.io/v1", "VirtualService", a.ns, "echo")
	vs.Object["spec"] = map[string]any{
		"hosts": []any{host},
		"http": []any{map[string]any{
			"name": "primary",
			"route": []any{
				map[string]any{"destination": map[string]any{"host": host, "subset": "stable"}, "weight": int64(100)},
				map[string]any{"destination": map[string]any{"host": host, "subset": "canary"}, "weight": int64(0)},
			},
		}},
	}
	steps := []any{map[string]any{"setWeight": int64(CanaryWeight)}, map[string]any{"pause": map[string]any{}}}
	if a.plan.Analysis {
		steps = []any{
			map[string]any{"setWeight": int64(CanaryWeight)},
			map[string]any{"analysis": map[string]any{"templates": []any{map[string]any{"templateName": "echo-errors"}}}},
		}
	}
	ro := unstructuredOf(argoAPI, "Rollout", a.ns, "echo")
	ro.Object["spec"] = map[string]any{
		"replicas": int64(1),
		"selector": map[string]any{"matchLabels": map[string]any{AppLabel: "echo"}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{AppLabel: "echo"}},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
		},
		"strategy": map[string]any{"canary": map[string]any{
			"trafficRouting": map[string]any{"istio": map[string]any{
				"virtualService": map[string]any{"name": "echo", "routes": []any{"primary"}},
				"destinationRule": map[string]any{
					"name": "echo", "canarySubsetName": "canary", "stableSubsetName": "stable",
				},
			}},
			"steps": steps,
		}},
	}
	objs := []*unstructured.Unstructured{se, dr, vs}
	if a.plan.Analysis {
		objs = append(objs, a.analysisTemplate())
	}
	return append(objs, ro)
}

// analysisTemplate is the analysis of Sluice's side in Argo Rollouts'
// terms: the same query, interval, conditions and failure limit.
func (a *ArgoIstiod) analysisTemplate() *unstructured.Unstructured {
	at := unstructuredOf(argoAPI, "AnalysisTemplate", a.ns, "echo-errors")
	at.Object["spec"] = map[string]any{
		"metrics": []any{map[string]any{
			"name":             "error-ratio",
			"interval":         a.plan.Interval.String(),
			"count":            int64(AnalysisCount),
			"failureLimit":     int64(0),
			"successCondition": fmt.Sprintf("result[0] <= %g", ErrorThreshold),
			"failureCondition": fmt.Sprintf("result[0] > %g", ErrorThreshold),
			"provider": map[string]any{"prometheus": map[string]any{
				"address": a.plan.PrometheusURL,
				"timeout": int64(2),
				"query":   ErrorRatioQuery(a.plan.RateWindow),
			}},
		}},
	}
	return at
}

// publishEndpoints keeps the ServiceEntry's endpoints those of the
// ReplicaSets with available replicas, every 20 ms from the world's
// cache.
func (a *ArgoIstiod) publishEndpoints(ctx context.Context) {
	last := ""
	for ctx.Err() == nil {
		eps, images, err := a.endpoints(ctx)
		if err == nil {
			b, _ := json.Marshal(eps)
			if string(b) != last {
				se := unstructuredOf("networking.istio.io/v1", "ServiceEntry", a.ns, "echo")
				se.Object["spec"] = map[string]any{"endpoints": eps}
				if err := a.c.Patch(ctx, se, client.Apply, client.FieldOwner("peerbench-endpoints"), client.ForceOwnership); err == nil {
					last = string(b)
					for _, image := range images {
						a.publish(image)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// endpoints are the ServiceEntry's endpoints, and the images they run.
func (a *ArgoIstiod) endpoints(ctx context.Context) ([]any, []string, error) {
	var list appsv1.ReplicaSetList
	if err := a.world.Cache.List(ctx, &list, client.InNamespace(a.ns)); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(list.Items, func(x, y appsv1.ReplicaSet) int { return strings.Compare(x.Name, y.Name) })
	eps := []any{}
	var images []string
	for i := range list.Items {
		rs := &list.Items[i]
		if replicas(rs) > 0 {
			a.see(imageOf(rs))
		}
		if replicas(rs) == 0 || !AllAvailable(rs) {
			continue
		}
		images = append(images, imageOf(rs))
		_, tag, _ := strings.Cut(imageOf(rs), ":")
		e := a.plan.Backends[tag]
		if e == nil {
			return nil, nil, fmt.Errorf("ReplicaSet %s runs %s, for which there is no backend", rs.Name, imageOf(rs))
		}
		host, _, _ := strings.Cut(e.Addr, ":")
		labels := map[string]any{}
		for k, v := range rs.Spec.Template.Labels {
			labels[k] = v
		}
		eps = append(eps, map[string]any{
			"address": host,
			"ports":   map[string]any{grpcPortName: int64(e.Port)},
			"labels":  labels,
		})
	}
	return eps, images, nil
}

// Node is a proxyless gRPC client's node as istio-agent's gRPC bootstrap
// names it: a sidecar node id and GENERATOR "grpc".
func (a *ArgoIstiod) Node(i int) GRPCNode {
	ip := fmt.Sprintf("10.201.%d.%d", i/250, 1+i%250)
	name := fmt.Sprintf("client-%d", i)
	return GRPCNode{
		ID: fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, name, a.ns, a.ns),
		Metadata: map[string]any{
			"GENERATOR":     "grpc",
			"NAMESPACE":     a.ns,
			"NAME":          name,
			"INSTANCE_IPS":  ip,
			"ISTIO_VERSION": "1.31.0",
			"CLUSTER_ID":    "Kubernetes",
			"LABELS":        map[string]any{"app": "client"},
		},
	}
}

// Release applies the Rollout with image echo:v2, as Argo CD syncs a
// commit that changed it.
func (a *ArgoIstiod) Release(ctx context.Context) (time.Time, error) {
	objs := a.objects("echo:v2")
	ro := objs[len(objs)-1]
	if err := a.c.Patch(ctx, ro, client.Apply, client.FieldOwner(gitopsManager), client.ForceOwnership); err != nil {
		return time.Time{}, fmt.Errorf("apply Rollout: %w", err)
	}
	return time.Now(), nil
}

// Aborted: the Rollout's status.abort, which Argo Rollouts sets when an
// analysis fails.
func (a *ArgoIstiod) Aborted(ctx context.Context) (bool, string, error) {
	ro := unstructuredOf(argoAPI, "Rollout", a.ns, "echo")
	if err := a.c.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
		return false, "", err
	}
	abort, _, _ := unstructured.NestedBool(ro.Object, "status", "abort")
	phase, _, _ := unstructured.NestedString(ro.Object, "status", "phase")
	msg, _, _ := unstructured.NestedString(ro.Object, "status", "message")
	return abort, fmt.Sprintf("phase %s: %s", phase, msg), nil
}

// FailedMeasurement reads Argo Rollouts' AnalysisRuns: the startedAt of
// the first Failed measurement (whole seconds: Argo Rollouts keeps no
// more).
func (a *ArgoIstiod) FailedMeasurement(ctx context.Context) (time.Time, error) {
	var runs unstructured.UnstructuredList
	runs.SetAPIVersion(argoAPI)
	runs.SetKind("AnalysisRunList")
	if err := a.c.List(ctx, &runs, client.InNamespace(a.ns)); err != nil {
		return time.Time{}, err
	}
	for _, ar := range runs.Items {
		results, _, _ := unstructured.NestedSlice(ar.Object, "status", "metricResults")
		for _, r := range results {
			rm, _ := r.(map[string]any)
			ms, _, _ := unstructured.NestedSlice(rm, "measurements")
			for _, m := range ms {
				m, _ := m.(map[string]any)
				phase, _, _ := unstructured.NestedString(m, "phase")
				started, _, _ := unstructured.NestedString(m, "startedAt")
				if phase != "Failed" {
					continue
				}
				at, err := time.Parse(time.RFC3339, started)
				if err != nil {
					return time.Time{}, fmt.Errorf("AnalysisRun %s: measurement startedAt %q: %w", ar.GetName(), started, err)
				}
				return at, nil
			}
		}
	}
	return time.Time{}, nil
}

func (a *ArgoIstiod) Stop() {
	for _, p := range slices.Backward(a.procs) {
		p.Stop(10 * time.Second)
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if a.ns != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var errs []error
		for _, k := range append([]struct{ apiVersion, kind string }{
			{argoAPI, "AnalysisRun"}, {argoAPI, "AnalysisTemplate"}, {"networking.istio.io/v1", "ServiceEntry"},
		}, cleanedKinds...) {
			errs = append(errs, deleteAll(ctx, a.c, a.ns, k.apiVersion, k.kind))
		}
		errs = append(errs, a.c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}))
		if err := errors.Join(errs...); err != nil && a.Log != nil {
			fmt.Fprintf(a.Log, "peerbench: cleanup of %s: %v\n", a.ns, err)
		}
	}
	if a.dir != "" {
		_ = os.RemoveAll(a.dir)
	}
}

// kubeconfigIn writes dir/kubeconfig for cfg's API server with namespace
// as its context's namespace (a controller's own).
func kubeconfigIn(cfg *rest.Config, dir, namespace string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench", Namespace: namespace}
	kc.CurrentContext = "bench"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o600)
}
