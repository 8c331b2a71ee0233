package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// DesiredRevision names the revision a spec asks for: the backend's version
// in standalone mode, or a hash of the pod template in controller mode (the
// value of the sluice.dev/revision label on its ReplicaSet and pods).
// The template must carry the CRD's defaults, as the API server stores it;
// rollout/manifest applies them to what it reads from Git, so that Git and
// the cluster name the same revision.
func DesiredRevision(spec *v1alpha1.RolloutSpec) (string, error) {
	switch {
	case spec.Backend != nil:
		if spec.Backend.Version == "" {
			return "", errors.New("spec.backend.version: required")
		}
		return spec.Backend.Version, nil
	case spec.Template != nil:
		b, err := json.Marshal(spec.Template)
		if err != nil {
			return "", fmt.Errorf("spec.template: hash: %w", err)
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])[:10], nil
	}
	return "", errors.New("spec: exactly one of template or backend must be set")
}
