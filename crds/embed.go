// Package crds holds Sluice's CustomResourceDefinitions as controller-gen
// generates them (`make generate`), so that code outside a cluster can
// treat an object the way the API server will: rollout/manifest applies
// their schema defaults to what it reads from Git.
package crds

import (
	"embed"
	"fmt"
	"strings"
)

//go:embed sluice.dev_*.yaml
var files embed.FS

// CRD returns the CustomResourceDefinition manifest (YAML) of a sluice.dev
// kind, e.g. "Rollout". controller-gen names each file after the kind's
// plural, which for Sluice's kinds is the lower-case kind plus "s".
func CRD(kind string) ([]byte, error) {
	name := "sluice.dev_" + strings.ToLower(kind) + "s.yaml"
	data, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("crds: no CustomResourceDefinition for kind %q: %w", kind, err)
	}
	return data, nil
}
