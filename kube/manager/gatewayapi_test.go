package manager_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The package's API server starts without the Gateway API CRDs. The
// controller starts anyway (every test here shows it; this one as the
// controller's service account, with the generated role), and a Rollout
// whose router names an HTTPRoute says in its status that the CRDs are
// missing, while a Rollout without one is served as ever. Then the CRDs
// are installed and the route applied, with the controller running: the
// Rollout's plan lands in the route's rule, the gateway's status
// acknowledges it, and the API server refused the controller nothing
// (the role's verbs for routes are enough).
func TestGatewayAPIRouterWithoutCRDs(t *testing.T) {
	admin, ctrlCfg := cluster(t)
	ns := kubetest.Namespace(t, admin, "gw-missing-")
	var logs lockedBuffer
	logSink.set(&logs)
	t.Cleanup(func() { logSink.set(nil) })
	startSingle(t, ctrlCfg, ns, "gw-missing", "")

	gw := gatewayRollout(ns, "ratings", &v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "ratings"}})
	plain := gatewayRollout(ns, "details", nil)
	for _, ro := range []*v1alpha1.Rollout{gw, plain} {
		if err := admin.Create(context.Background(), ro); err != nil {
			t.Fatal(err)
		}
	}
	route := &unstructured.Unstructured{}
	route.SetGroupVersionKind(schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"})
	installed := !meta.IsNoMatchError(admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ratings"}, route))
	if !installed { // not when an earlier run (-count) installed them
		msg := reconciledFalse(t, admin, gw)
		t.Logf("condition %s", msg)
		if !strings.Contains(msg, controller.ReasonPublishFailed) || !strings.Contains(msg, "the Gateway API CRDs are not installed") ||
			!strings.Contains(msg, "HTTPRoute") {
			t.Errorf("condition %q: want PublishFailed naming the missing HTTPRoute CRD", msg)
		}
	}
	poll.Until(t, "the Rollout without a Gateway API router reconciled", func() bool {
		if err := admin.Get(context.Background(), client.ObjectKeyFromObject(plain), plain); err != nil {
			return false
		}
		return meta.IsStatusConditionTrue(plain.Status.Conditions, controller.ConditionReconciled)
	})

	// The CRDs arrive, then the route.
	crds, err := kubetest.GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	cfgAdmin, _ := env.Start(t)
	if _, err := envtest.InstallCRDs(cfgAdmin, envtest.CRDInstallOptions{Paths: []string{crds}}); err != nil {
		t.Fatal(err)
	}
	route.Object = map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"namespace": ns, "name": "ratings"},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": "public"}},
			"rules":      []any{map[string]any{"backendRefs": []any{map[string]any{"name": "ratings", "port": int64(8080)}}}},
		},
	}
	poll.Until(t, "the route created", func() bool { return admin.Create(context.Background(), route) == nil })
	key := client.ObjectKeyFromObject(gw)
	poll.Until(t, "the plan in the route", func() bool {
		if err := admin.Get(context.Background(), key, gw); err != nil || gw.Status.StableRevision == "" {
			return false
		}
		if err := admin.Get(context.Background(), client.ObjectKeyFromObject(route), route); err != nil {
			return false
		}
		refs, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
		return len(refs) == 1 && strings.Contains(fmt.Sprint(refs[0]), "ratings-"+gw.Status.StableRevision)
	})
	// The test plays the gateway: Accepted and ResolvedRefs at the route's
	// generation acknowledge the plan.
	now := metav1.Now().UTC().Format(time.RFC3339)
	cond := func(typ string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "reason": typ, "message": "", "observedGeneration": route.GetGeneration(), "lastTransitionTime": now}
	}
	route.Object["status"] = map[string]any{"parents": []any{map[string]any{
		"parentRef":      map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"},
		"controllerName": "example.com/gateway-controller",
		"conditions":     []any{cond("Accepted"), cond("ResolvedRefs")},
	}}}
	if err := admin.Status().Update(context.Background(), route); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the plan acknowledged and the Rollout reconciled", func() bool {
		if err := admin.Get(context.Background(), key, gw); err != nil {
			return false
		}
		tr := gw.Status.Traffic
		return tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion && meta.IsStatusConditionTrue(gw.Status.Conditions, controller.ConditionReconciled)
	})
	switch text := logs.String(); {
	case strings.Contains(text, "forbidden"):
		t.Errorf("the API server refused the controller (crds/rbac/role.yaml lacks a permission):\n%s", text)
	case strings.Contains(text, "cannot watch routes"):
		t.Errorf("the route writer could not watch the routes:\n%s", text)
	}
}

// reconciledFalse waits for ro's Reconciled condition to be False and
// returns its reason and message.
func reconciledFalse(t *testing.T, c client.Client, ro *v1alpha1.Rollout) string {
	t.Helper()
	var msg string
	poll.Until(t, "Reconciled=False", func() bool {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(ro), ro); err != nil {
			return false
		}
		cond := meta.FindStatusCondition(ro.Status.Conditions, controller.ConditionReconciled)
		if cond == nil || cond.Status != metav1.ConditionFalse {
			return false
		}
		msg = cond.Reason + ": " + cond.Message
		return true
	})
	return msg
}

// lockedBuffer collects log lines written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gatewayRollout is a Rollout of one replica, with router as its only
// router (nil: the default, Istio).
func gatewayRollout(ns, name string, router *v1alpha1.Router) *v1alpha1.Rollout {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: name, Hosts: []string{name + ".example.com"}, Port: 8080},
			Replicas: ptr.To[int32](1),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: name + ":v1"}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{{SetWeight: ptr.To[int32](50)}}}},
		},
	}
	if router != nil {
		ro.Spec.Service.Routers = []v1alpha1.Router{*router}
	}
	return ro
}
