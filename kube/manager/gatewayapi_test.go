package manager_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/manager"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The package's API server has no Gateway API CRDs. The controller starts
// anyway (every test here shows it; this one as the controller's service
// account, with the generated role), and a Rollout whose router names an
// HTTPRoute says in its status that the CRDs are missing, while a Rollout
// without one is served as ever.
func TestGatewayAPIRouterWithoutCRDs(t *testing.T) {
	admin, ctrlCfg := cluster(t)
	ns := kubetest.Namespace(t, admin, "gw-missing-")
	cfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: %s
stateDir: %s
watchNamespaces: [%s]
leaderElection: {enabled: false}
http: {metricsAddress: "0", probeAddress: "0", webhookAddress: "0"}
xds:
  address: 127.0.0.1:0
  insecurePlaintext: true
  replicaName: gw-missing
`, controllerNamespace, t.TempDir(), ns))
	if err != nil {
		t.Fatal(err)
	}
	c, err := manager.New(manager.Options{
		Config: cfg, RestConfig: ctrlCfg, Log: logger("gw-missing"),
		Registerer: prometheus.NewRegistry(), SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Start(t, "controller", c)

	gw := gatewayRollout(ns, "ratings", &v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "ratings"}})
	plain := gatewayRollout(ns, "details", nil)
	for _, ro := range []*v1alpha1.Rollout{gw, plain} {
		if err := admin.Create(context.Background(), ro); err != nil {
			t.Fatal(err)
		}
	}
	var msg string
	poll.Until(t, "the Gateway API Rollout's status names the missing CRDs", func() bool {
		if err := admin.Get(context.Background(), client.ObjectKeyFromObject(gw), gw); err != nil {
			return false
		}
		cond := meta.FindStatusCondition(gw.Status.Conditions, controller.ConditionReconciled)
		if cond == nil || cond.Status != metav1.ConditionFalse {
			return false
		}
		msg = cond.Reason + ": " + cond.Message
		return true
	})
	t.Logf("condition %s", msg)
	if !strings.Contains(msg, controller.ReasonPublishFailed) || !strings.Contains(msg, "the Gateway API CRDs are not installed") ||
		!strings.Contains(msg, "HTTPRoute") {
		t.Errorf("condition %q: want PublishFailed naming the missing HTTPRoute CRD", msg)
	}
	poll.Until(t, "the Rollout without a Gateway API router reconciled", func() bool {
		if err := admin.Get(context.Background(), client.ObjectKeyFromObject(plain), plain); err != nil {
			return false
		}
		return meta.IsStatusConditionTrue(plain.Status.Conditions, controller.ConditionReconciled)
	})
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
