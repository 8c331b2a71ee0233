package kubetest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// IstioCRDs finds Istio's CRD manifest in the module cache: the CRDs of
// the very istio.io/api version the code is built against. Use it in
// Env.CRDs.
func IstioCRDs() (string, error) {
	dir, err := moduleDir("istio.io/api")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return p, nil
}

// moduleDir is where the module cache holds module, at the version the
// code is built against.
func moduleDir(module string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-json", module).Output()
	if err != nil {
		return "", fmt.Errorf("locating %s with go list: %w", module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("%s is not in the module cache (go mod download %s): %v", module, module, err)
	}
	return mod.Dir, nil
}

// WithIstioCRDs installs Istio's CRDs (IstioCRDs) after those e installs
// already, and returns e: `NewEnv(istio.AddToScheme).WithIstioCRDs()`.
// Istio's types come from the caller, since kube/istio's own tests use
// this package and it cannot import kube/istio. Call it before Start.
func (e *Env) WithIstioCRDs() *Env { return e.withCRDs(IstioCRDs) }

// withCRDs installs the manifests more finds after those e installs
// already, and returns e.
func (e *Env) withCRDs(more func() (string, error)) *Env {
	crds := e.CRDs
	e.CRDs = func() ([]string, error) {
		var files []string
		if crds != nil {
			var err error
			if files, err = crds(); err != nil {
				return nil, err
			}
		}
		extra, err := more()
		if err != nil {
			return nil, err
		}
		return append(files, extra), nil
	}
	return e
}
