package gatewayapi

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One envtest control plane (real kube-apiserver + etcd) with Sluice's
// CRDs and the Gateway API's standard channel, from the
// sigs.k8s.io/gateway-api module, serves every test of the package. No
// gateway controller runs: the tests write the routes' status as one
// would, and mark ReplicaSets available as the kubelet would.
var env = kubetest.NewEnv(gatewayv1.Install).WithGatewayAPICRDs()

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	os.Exit(env.Run(m))
}

// gatewayController is the controllerName the tests write status as.
const gatewayController = "example.com/gateway-controller"

// fieldManagerGitOps is the field manager of the user's GitOps tool.
const fieldManagerGitOps = "gitops"

// gitopsApply applies obj (a typed route) as a GitOps tool does: server-
// side, as its own field manager, taking over conflicting fields.
func gitopsApply(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	u := toUnstructured(t, obj)
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	if err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManagerGitOps), client.ForceOwnership); err != nil {
		t.Fatalf("GitOps apply of %s: %v", obj.GetName(), err)
	}
}

// userRoute makes a namespace with the user's HTTPRoute in it, applied
// by their GitOps tool, and returns the route's key.
func userRoute(t testing.TB, c client.Client, prefix string) types.NamespacedName {
	t.Helper()
	user := userHTTPRoute()
	user.Namespace = kubetest.Namespace(t, c, prefix)
	gitopsApply(t, c, user)
	return client.ObjectKeyFromObject(user)
}

// routeOf reads a route as unstructured.
func routeOf(t testing.TB, c client.Client, kind Kind, key types.NamespacedName) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kind.GroupVersionKind())
	if err := c.Get(context.Background(), key, u); err != nil {
		t.Fatalf("reading %s %s: %v", kind, key, err)
	}
	return u
}

// setParentStatus plays the gateway controller: for every parentRef of
// the route, Accepted and ResolvedRefs as given, observed at the route's
// current generation plus genOffset (negative: a stale status).
func setParentStatus(t testing.TB, c client.Client, kind Kind, key types.NamespacedName, accepted metav1.ConditionStatus, reason, msg string, genOffset int64) {
	t.Helper()
	for range 10 {
		u := routeOf(t, c, kind, key)
		parents, _, _ := unstructured.NestedSlice(u.Object, "spec", "parentRefs")
		var refs []gatewayv1.ParentReference
		if err := fromUnstructured(parents, &refs); err != nil {
			t.Fatal(err)
		}
		gen := u.GetGeneration() + genOffset
		now := metav1.Now()
		var st gatewayv1.RouteStatus
		for _, p := range refs {
			ps := gatewayv1.RouteParentStatus{ParentRef: p, ControllerName: gatewayController}
			meta.SetStatusCondition(&ps.Conditions, metav1.Condition{Type: string(gatewayv1.RouteConditionAccepted), Status: accepted,
				Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: now})
			meta.SetStatusCondition(&ps.Conditions, metav1.Condition{Type: string(gatewayv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue,
				Reason: string(gatewayv1.RouteReasonResolvedRefs), ObservedGeneration: gen, LastTransitionTime: now})
			st.Parents = append(st.Parents, ps)
		}
		var err error
		if err = setStatus(u, st); err == nil {
			err = c.Status().Update(context.Background(), u)
		}
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("writing status of %s %s: %v", kind, key, err)
		}
	}
	t.Fatalf("writing status of %s %s: conflicts", kind, key)
}

func setStatus(u *unstructured.Unstructured, st gatewayv1.RouteStatus) error {
	m := map[string]any{}
	if err := jsonInto(st.Parents, &m, "parents"); err != nil {
		return err
	}
	u.Object["status"] = m
	return nil
}

// accept plays a gateway that accepts everything it is given.
func accept(t testing.TB, c client.Client, kind Kind, key types.NamespacedName) {
	t.Helper()
	setParentStatus(t, c, kind, key, metav1.ConditionTrue, string(gatewayv1.RouteReasonAccepted), "Accepted", 0)
}

// newRollout is a controller-mode canary Rollout of image whose plan goes
// to the router alone.
func newRollout(ns, name, image string, port int32, router v1alpha1.Router, steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: name, Hosts: []string{name + ".example.com"}, Port: port,
				Routers: []v1alpha1.Router{router}},
			Replicas: ptr.To[int32](2),
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

func pauseFor(d time.Duration) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{Duration: &metav1.Duration{Duration: d}}}
}

// harness drives the Rollout reconciler by hand against the real API
// server with a clock of its own, publishing to the Gateway API router
// alone, which is also the only acknowledger: each reconcile is one call,
// so tests read like the rollout's timeline.
type harness struct {
	t     *testing.T
	c     client.WithWatch
	r     *controller.Reconciler
	pub   *Publisher
	now   time.Time
	key   types.NamespacedName
	ro    *v1alpha1.Rollout
	kind  Kind
	route types.NamespacedName
}

func newHarness(t *testing.T, c client.WithWatch, ro *v1alpha1.Rollout, kind Kind, route string) *harness {
	t.Helper()
	if err := c.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	pub := NewPublisher(NewWriter(c))
	h := &harness{t: t, c: c, pub: pub, now: time.Now().UTC().Truncate(time.Second),
		key: client.ObjectKeyFromObject(ro), kind: kind, route: types.NamespacedName{Namespace: ro.Namespace, Name: route}}
	h.r = &controller.Reconciler{Client: c, Recorder: &record.FakeRecorder{}, Publisher: pub, Acknowledger: controller.Acknowledgers{pub},
		Now: func() time.Time { return h.now }}
	return h
}

func (h *harness) reconcile() error {
	h.t.Helper()
	_, err := h.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: h.key})
	h.ro = &v1alpha1.Rollout{}
	if gerr := h.c.Get(context.Background(), h.key, h.ro); gerr != nil {
		h.t.Fatal(gerr)
	}
	return err
}

func (h *harness) mustReconcile() {
	h.t.Helper()
	if err := h.reconcile(); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
}

// drive reconciles, with the pods available and the gateway accepting
// (unless gateway says otherwise), until done holds.
func (h *harness) drive(what string, gateway func(), done func(*v1alpha1.Rollout) bool) {
	h.t.Helper()
	for range 20 {
		if err := kubetest.MarkAvailable(context.Background(), h.c, h.key.Namespace); err != nil {
			h.t.Fatal(err)
		}
		h.mustReconcile()
		if done(h.ro) {
			return
		}
		if gateway != nil {
			gateway()
		}
	}
	h.t.Fatalf("not %s after 20 reconciles: phase %s, step %s: %s", what, h.ro.Status.Phase, h.ro.Status.StepDisplay, h.ro.Status.Message)
}

func (h *harness) accepting() { accept(h.t, h.c, h.kind, h.route) }

func (h *harness) live() *unstructured.Unstructured { return routeOf(h.t, h.c, h.kind, h.route) }

func (h *harness) setImage(image string) string {
	h.t.Helper()
	h.ro.Spec.Template.Spec.Containers[0].Image = image
	if err := h.c.Update(context.Background(), h.ro); err != nil {
		h.t.Fatal(err)
	}
	rev, err := engine.DesiredRevision(&h.ro.Spec)
	if err != nil {
		h.t.Fatal(err)
	}
	return rev
}

// stepAcked holds once step i is acknowledged.
func stepAcked(i int32) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		st := ro.Status
		return st.CurrentStepIndex != nil && *st.CurrentStepIndex == i && st.StepAcknowledgedAt != nil
	}
}

func healthy(ro *v1alpha1.Rollout) bool {
	tr := ro.Status.Traffic
	return ro.Status.Phase == v1alpha1.PhaseHealthy && tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion
}

// servicesExist checks that every backend a route names is a per-revision
// Service the controller made.
func servicesExist(t testing.TB, c client.Client, ns string, names []string) {
	t.Helper()
	for _, n := range names {
		svc := &corev1.Service{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: n}, svc); err != nil {
			t.Errorf("backend Service %s: %v", n, err)
			continue
		}
		if svc.Labels[workload.LabelManagedBy] != workload.ManagedBy {
			t.Errorf("backend Service %s is not Sluice's per-revision Service: labels %v", n, svc.Labels)
		}
	}
}
