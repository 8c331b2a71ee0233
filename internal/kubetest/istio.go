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
	out, err := exec.Command("go", "list", "-m", "-json", "istio.io/api").Output()
	if err != nil {
		return "", fmt.Errorf("locating istio.io/api with go list: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("istio.io/api is not in the module cache (go mod download istio.io/api): %v", err)
	}
	p := filepath.Join(mod.Dir, "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return p, nil
}

// WithIstioCRDs installs Istio's CRDs (IstioCRDs) after those e installs
// already, and returns e: `NewEnv(istio.AddToScheme).WithIstioCRDs()`.
// Istio's types come from the caller, since kube/istio's own tests use
// this package and it cannot import kube/istio. Call it before Start.
func (e *Env) WithIstioCRDs() *Env {
	crds := e.CRDs
	e.CRDs = func() ([]string, error) {
		var files []string
		if crds != nil {
			var err error
			if files, err = crds(); err != nil {
				return nil, err
			}
		}
		istio, err := IstioCRDs()
		if err != nil {
			return nil, err
		}
		return append(files, istio), nil
	}
	return e
}
