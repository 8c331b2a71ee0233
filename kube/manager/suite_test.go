package manager_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/istio"
)

// One envtest control plane (real kube-apiserver + etcd) with the Sluice
// CRDs and Istio's (from the istio.io/api module the code is built
// against) serves the package. There is no kubelet and no
// kube-controller-manager: the end-to-end test plays them where it must
// (kubelet_test.go).
var env = kubetest.NewEnv(istio.AddToScheme).WithIstioCRDs()

// bare is a second control plane, as fresh as a new kind cluster: no CRD
// at all, not even Sluice's, until a test installs them (quickstart_test.go).
var bare = &kubetest.Env{
	Scheme: kubetest.NewEnv(istio.AddToScheme).Scheme,
	CRDs:   func() ([]string, error) { return nil, nil },
}

func TestMain(m *testing.M) {
	// client-go reports what its informers and Event broadcasters could
	// not do (a list or an Event the API server refused) through klog:
	// into the test's log, where checkAuthorized looks for refusals.
	klog.SetLogger(logger("client-go"))
	code := env.Run(m)
	if err := bare.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// The controller's identity, as crds/rbac/service_account.yaml declares it
// and as the API server authenticates a pod's service account token.
const (
	controllerNamespace = "sluice-system"
	controllerUser      = "system:serviceaccount:" + controllerNamespace + ":sluice-controller"
)

var controllerGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + controllerNamespace, "system:authenticated"}

// cluster is an administrator's client of the shared API server, with
// the namespace and RBAC of crds/ installed (once; applying is
// idempotent), and the rest.Config a controller should use: the
// controller's service account, by impersonation, so that every request
// the managers make is authorized by the generated least-privilege role
// and a missing verb fails the test as it would fail in a cluster.
func cluster(t *testing.T) (admin client.WithWatch, controller *rest.Config) {
	t.Helper()
	c := env.Client(t)
	cfg, _ := env.Start(t)
	install := []string{filepath.Join("..", "..", "crds", "namespace.yaml")}
	rbac, err := filepath.Glob(filepath.Join("..", "..", "crds", "rbac", "*.yaml"))
	if err != nil || len(rbac) == 0 {
		t.Fatalf("no crds/rbac/*.yaml (err %v)", err)
	}
	for _, f := range append(install, rbac...) {
		if err := applyFile(context.Background(), c, f); err != nil {
			t.Fatal(err)
		}
	}
	sa := rest.CopyConfig(cfg)
	sa.Impersonate = rest.ImpersonationConfig{UserName: controllerUser, Groups: controllerGroups}
	// Two managers, an analysis controller and a Git applier share one
	// process and one API server: client-go's default of 5 requests per
	// second would make the test measure its own throttling.
	sa.QPS, sa.Burst = 200, 400
	return c, sa
}

// applyFile applies every object of a YAML file with server-side apply,
// as `kubectl apply --server-side -f` does.
func applyFile(ctx context.Context, c client.Client, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("e2e-install"), client.ForceOwnership); err != nil {
			return fmt.Errorf("%s: apply %s %s: %w", path, u.GetKind(), u.GetName(), err)
		}
	}
}
