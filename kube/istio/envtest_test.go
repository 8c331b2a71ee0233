package istio

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/internal/kubetest"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// One envtest control plane (real kube-apiserver + etcd) with Istio's CRDs
// from the istio.io/api module serves every test of the package.
var env = &kubetest.Env{
	Scheme: []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, AddToScheme},
	CRDs: func() ([]string, error) {
		crds, err := kubetest.IstioCRDs()
		return []string{crds}, err
	},
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// cluster returns a client of the shared API server. It skips the test when
// the binaries or the Istio CRDs are missing, and fails instead with CI=true.
func cluster(t *testing.T) client.Client {
	t.Helper()
	cfg, scheme := env.Start(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// namespace creates a namespace of its own for one test.
func namespace(t *testing.T, c client.Client) string {
	t.Helper()
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sluice-istio-"}}
	if err := c.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return n.Name
}
