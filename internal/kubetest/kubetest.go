// Package kubetest shares one envtest control plane (a real kube-apiserver
// and etcd from bin/) among the tests of a package: it starts with the first
// test that needs it, so tests that don't pay nothing, and the package's
// TestMain stops it. It lives apart from testbin so that packages which
// must not depend on controller-runtime can still use testbin.
package kubetest

import (
	"fmt"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/testbin"
)

// Env is a lazily started envtest environment.
type Env struct {
	// Scheme lists what the API server's clients must know.
	Scheme []func(*runtime.Scheme) error
	// CRDs returns the CRD manifests (files or folders) to install. An error
	// skips the test, or fails it under CI=true, like a missing binary.
	CRDs func() ([]string, error)

	once   sync.Once
	env    *envtest.Environment
	cfg    *rest.Config
	scheme *runtime.Scheme
	err    error
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
	cfg, err := e.env.Start()
	if err != nil {
		return fmt.Errorf("starting envtest with binaries from %s: %w", dir, err)
	}
	e.cfg = cfg
	return nil
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
