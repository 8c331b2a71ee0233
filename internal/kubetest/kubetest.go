// Package kubetest shares one envtest control plane (a real kube-apiserver
// and etcd from bin/) among the tests of a package: it starts with the first
// test that needs it, so tests that don't pay nothing, and the package's
// TestMain stops it. It lives apart from testbin so that packages which
// must not depend on controller-runtime can still use testbin.
package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Env is a lazily started envtest environment.
type Env struct {
	// Scheme lists what the API server's clients must know.
	Scheme []func(*runtime.Scheme) error
	// CRDs returns the CRD manifests (files or folders) to install. An error
	// skips the test, or fails it under CI=true, like a missing binary.
	CRDs func() ([]string, error)

	once sync.Once
	// users serialises AddUser: envtest's certificate authority counts
	// serial numbers without a lock.
	users  sync.Mutex
	env    *envtest.Environment
	cfg    *rest.Config
	scheme *runtime.Scheme
	err    error
}

// NewEnv is the Env most packages' tests need: Kubernetes' own types and
// Sluice's API in the scheme, more added to it, and Sluice's CRDs
// installed.
func NewEnv(more ...func(*runtime.Scheme) error) *Env {
	return &Env{
		Scheme: append([]func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme}, more...),
		CRDs:   SluiceCRDs,
	}
}

// SluiceCRDs lists Sluice's CRD manifests, crds/sluice.dev_*.yaml at the
// module root as controller-gen writes them, for Env.CRDs. Naming the
// files rather than the folder keeps the install bundle and the RBAC
// manifests beside them out of envtest's reading.
func SluiceCRDs() ([]string, error) {
	root, err := testbin.ModuleRoot()
	if err != nil {
		return nil, fmt.Errorf("sluice CRDs: %w", err)
	}
	pattern := filepath.Join(root, "crds", "sluice.dev_*.yaml")
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("sluice CRDs: nothing matches %s (err %v): run `make generate`", pattern, err)
	}
	return files, nil
}

// Start returns the shared API server's config and scheme, starting it on
// first use.
func (e *Env) Start(t testing.TB) (*rest.Config, *runtime.Scheme) {
	t.Helper()
	dir := testbin.Require(t, "kube-apiserver", "etcd")
	crds, err := e.CRDs()
	if err != nil {
		testbin.SkipOrFail(t, err.Error())
	}
	e.once.Do(func() { e.err = e.start(dir, crds) })
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.cfg, e.scheme
}

func (e *Env) start(dir string, crds []string) error {
	e.scheme = runtime.NewScheme()
	for _, add := range e.Scheme {
		if err := add(e.scheme); err != nil {
			return fmt.Errorf("envtest scheme: %w", err)
		}
	}
	e.env = &envtest.Environment{
		BinaryAssetsDirectory: dir,
		Scheme:                e.scheme,
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true},
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		// envtest's 20 s is short for a kube-apiserver built with -race
		// and started next to a loaded suite on two cores: a slow start
		// is not a failure of the code under test.
		e.env.ControlPlaneStartTimeout = 3 * time.Minute
	}
	cfg, err := e.env.Start()
	if err != nil {
		return fmt.Errorf("starting envtest with binaries from %s: %w", dir, err)
	}
	e.cfg = cfg
	return nil
}

// AddUser provisions a user that the shared API server authenticates by a
// client certificate of its own, for tests that need a named identity (who
// sent a command, what RBAC refuses). Groups decide what it may do: the API
// server authorizes with RBAC, and "system:masters" may do everything.
// Call it after Start; parallel tests may call it at once.
func (e *Env) AddUser(t testing.TB, u envtest.User) *envtest.AuthenticatedUser {
	t.Helper()
	if e.cfg == nil {
		t.Fatal("kubetest: AddUser before Start")
	}
	e.users.Lock()
	defer e.users.Unlock()
	au, err := e.env.AddUser(u, nil)
	if err != nil {
		t.Fatalf("kubetest: add user %q: %v", u.Name, err)
	}
	return au
}

// Stop stops the control plane if it was started.
func (e *Env) Stop() error {
	if e.env == nil || e.cfg == nil {
		return nil
	}
	if err := e.env.Stop(); err != nil {
		return fmt.Errorf("stopping envtest: %w", err)
	}
	return nil
}

// Run runs a package's tests and then stops the control plane, for a
// TestMain of one line: os.Exit(env.Run(m)).
func (e *Env) Run(m *testing.M) int {
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	return code
}

// Client returns an administrator's client of the shared API server,
// starting it on first use.
func (e *Env) Client(t testing.TB) client.WithWatch {
	t.Helper()
	cfg, scheme := e.Start(t)
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("kubetest: client: %v", err)
	}
	return c
}

// Namespace creates a namespace named prefix plus a random suffix, so tests
// sharing the API server never see each other's objects.
func Namespace(t testing.TB, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatalf("kubetest: create namespace %s*: %v", prefix, err)
	}
	return ns.Name
}

// MarkAvailable plays the ReplicaSet controller and the kubelet, which
// envtest does not run: every pod a ReplicaSet of ns asks for is available.
// A ReplicaSet changed meanwhile (a conflict) is left for the next call.
func MarkAvailable(ctx context.Context, c client.Client, ns string) error {
	var rss appsv1.ReplicaSetList
	if err := c.List(ctx, &rss, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list replicasets in %s: %w", ns, err)
	}
	for i := range rss.Items {
		rs := &rss.Items[i]
		n := *rs.Spec.Replicas
		if rs.Status.AvailableReplicas == n && rs.Status.Replicas == n {
			continue
		}
		rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n, n
		rs.Status.ObservedGeneration = rs.Generation
		if err := c.Status().Update(ctx, rs); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("mark replicaset %s/%s available: %w", ns, rs.Name, err)
		}
	}
	return nil
}
