package clusterapi

import (
	"context"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One real kube-apiserver and etcd serve every test of the package. Tests
// talk to it as users of their own (client certificates), as the CLI does
// with a person's kubeconfig; admin plays the controller.
var env = kubetest.NewEnv()

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// admin returns a client with every right, which the tests use to set the
// scene and to play the controller.
func admin(t *testing.T) client.WithWatch { return env.Client(t) }

// user returns the rest.Config of a user the API server authenticates by
// its own client certificate. Without groups it may do next to nothing
// (RBAC); "system:masters" may do everything.
func user(t *testing.T, name string, groups ...string) *rest.Config {
	t.Helper()
	env.Start(t)
	return env.AddUser(t, envtest.User{Name: name, Groups: groups}).Config()
}

// backendAs is a Backend with name's credentials, an administrator.
func backendAs(t *testing.T, name string, o Options) *Backend {
	t.Helper()
	b, err := New(user(t, name, "system:masters"), o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newNamespace(t *testing.T, c client.Client) string {
	return kubetest.Namespace(t, c, "sluice-cli-")
}

// newRollout creates a canary Rollout with a pause step and gives it the
// status of a rollout waiting there, as the controller would.
func newRollout(t *testing.T, c client.Client, ns, name string) *v1alpha1.Rollout {
	t.Helper()
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: name, Hosts: []string{name}, Port: 8080},
			Replicas: ptr.To[int32](1),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: name + ":v2"}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](20)}, {Pause: &v1alpha1.PauseStep{}},
			}}},
		},
	}
	ctx := context.Background()
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	ro.Status = v1alpha1.RolloutStatus{
		Phase: v1alpha1.PhasePaused, StableRevision: "aaa", CanaryRevision: "bbb",
		CurrentStepIndex: ptr.To[int32](1), StepCount: 2, StepDisplay: "2/3",
		Traffic: v1alpha1.TrafficStatus{StableWeight: 80, CanaryWeight: 20},
	}
	if err := c.Status().Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}
