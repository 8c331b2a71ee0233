package peerbench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Canary is the rollout both controllers run: the same steps, replicas and
// scale-down delay (BenchmarkThousandRollouts' in kube/controller).
var Canary = struct {
	Replicas         int32
	FirstWeight      int32
	SecondWeight     int32
	Pause            time.Duration
	ScaleDownSeconds int32
}{Replicas: 3, FirstWeight: 20, SecondWeight: 60, Pause: time.Second, ScaleDownSeconds: 1}

// AppLabel is the label whose value is the app (and Rollout) name on
// every pod template, so the world finds an app's ReplicaSets.
const AppLabel = "app"

// Controller is a progressive-delivery controller under measurement, run
// as its own process against the API server through an APIProxy.
type Controller interface {
	// Name names it in benchmark and log names.
	Name() string
	// Objects are what a user has in Git for one app, created before the
	// controller starts: the Rollout with image, and its Service and Istio
	// objects as the product's docs ask for them.
	Objects(ns, app, image string) []client.Object
	// RolloutList is an empty list of the product's Rollouts, for the
	// world's cache.
	RolloutList() client.ObjectList
	// SetImage changes the image of the Rollout: the change that starts
	// a rollout.
	SetImage(ctx context.Context, c client.Client, ns, name, image string) error
	// Done reports whether the Rollout runs image, promoted and with every
	// other revision scaled down, given the app's ReplicaSets; else what
	// it waits for.
	Done(obj client.Object, rs []*appsv1.ReplicaSet, image string) (bool, string)
	// Start starts the controller with a kubeconfig for the proxy, in
	// its own working folder dir, logging to log.
	Start(ctx context.Context, kubeconfig, dir string, log io.Writer) (*Process, error)
	// Measure starts collecting reconcile latencies; the function it
	// returns stops and reports them.
	Measure(ctx context.Context, p *Process) (func() (Latency, error), error)
}

// Latency of single reconciles over a measured window.
type Latency struct {
	N        int     // reconciles
	P50, P99 float64 // milliseconds
	Source   string  // how it was measured
}

// newCanaryImageRS reports whether exactly one of rs asks for replicas,
// with the given pod-template label value, and all of them available.
func onlyRevision(rs []*appsv1.ReplicaSet, label, value string) (bool, string) {
	var live []*appsv1.ReplicaSet
	for _, r := range rs {
		if replicas(r) > 0 {
			live = append(live, r)
		}
	}
	if len(live) != 1 {
		return false, fmt.Sprintf("%d ReplicaSets with replicas", len(live))
	}
	if got := live[0].Spec.Template.Labels[label]; got != value {
		return false, fmt.Sprintf("the ReplicaSet with replicas is %s=%s, want %s", label, got, value)
	}
	if !AllAvailable(live[0]) {
		return false, "replicas not available yet"
	}
	return true, ""
}

// imageOf is the first container image of a ReplicaSet.
func imageOf(rs *appsv1.ReplicaSet) string {
	if c := rs.Spec.Template.Spec.Containers; len(c) > 0 {
		return c[0].Image
	}
	return ""
}

// onlyImage reports whether exactly one of rs asks for replicas, runs
// image and has them all available.
func onlyImage(rs []*appsv1.ReplicaSet, image string) (bool, string) {
	live := slices.DeleteFunc(slices.Clone(rs), func(r *appsv1.ReplicaSet) bool { return replicas(r) == 0 })
	if len(live) != 1 {
		return false, fmt.Sprintf("%d ReplicaSets with replicas", len(live))
	}
	if got := imageOf(live[0]); got != image {
		return false, fmt.Sprintf("the ReplicaSet with replicas runs %s, want %s", got, image)
	}
	if !AllAvailable(live[0]) {
		return false, "replicas not available yet"
	}
	return true, ""
}

// podTemplate is the pod template of every app, in both products.
func podTemplate(app, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{AppLabel: app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// service is the app's Service as a user declares it. Headless: envtest's
// service IP range (a /24) has no address for 1,000 Services, and neither
// controller uses the address.
func service(ns, app string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{AppLabel: app},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 8080}},
		},
	}
}

// mergePatch sends a JSON merge patch to obj's kind and name.
func mergePatch(ctx context.Context, c client.Client, obj client.Object, patch string) error {
	return c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// unstructuredOf is an empty object of apiVersion and kind.
func unstructuredOf(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}
