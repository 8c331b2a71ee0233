package xdsplane

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One envtest control plane (real kube-apiserver + etcd) serves every test
// of the package. Nothing plays the EndpointSlice controller: the tests
// write the slices it would derive from the per-revision Services.
var env = &kubetest.Env{
	Scheme: []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme},
	CRDs:   func() ([]string, error) { return []string{filepath.Join("..", "..", "crds")}, nil },
}

func TestMain(m *testing.M) {
	// The managers log through controller-runtime; keep test output to
	// what the tests say.
	ctrl.SetLogger(logr.Discard())
	os.Exit(env.Run(m))
}

// cluster returns a client of the shared API server with the Sluice CRDs
// and a namespace of the test's own. It skips the test when the binaries
// are missing, except with CI=true, where that fails.
func cluster(t *testing.T) (client.Client, string) {
	t.Helper()
	c := env.Client(t)
	return c, kubetest.Namespace(t, c, "sluice-xds-")
}
