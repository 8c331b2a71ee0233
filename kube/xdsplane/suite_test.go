package xdsplane

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
)

// One envtest control plane (real kube-apiserver + etcd) serves every test
// of the package. Nothing plays the EndpointSlice controller: the tests
// write the slices it would derive from the per-revision Services.
var env = kubetest.NewEnv()

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
