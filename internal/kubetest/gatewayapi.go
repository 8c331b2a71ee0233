package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
)

// GatewayAPICRDs finds the Gateway API's standard-channel CRDs in the
// module cache: those of the very sigs.k8s.io/gateway-api version the code
// is built against (config/crd/standard). It returns the folder; envtest
// installs the CustomResourceDefinitions in it and passes over the rest
// (the ValidatingAdmissionPolicy that guards upgrades). Use it in Env.CRDs.
func GatewayAPICRDs() (string, error) {
	dir, err := moduleDir("sigs.k8s.io/gateway-api")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "config", "crd", "standard")
	if _, err := os.Stat(filepath.Join(p, "gateway.networking.k8s.io_httproutes.yaml")); err != nil {
		return "", fmt.Errorf("gateway API CRDs: %w", err)
	}
	return p, nil
}

// WithGatewayAPICRDs installs the Gateway API's standard-channel CRDs
// (GatewayAPICRDs) after those e installs already, and returns e. The
// Gateway API's types come from the caller
// (sigs.k8s.io/gateway-api/apis/v1.Install). Call it before Start.
func (e *Env) WithGatewayAPICRDs() *Env { return e.withCRDs(GatewayAPICRDs) }
