package analysisrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// SecretReader is the prometheus.SecretResolver of controller mode: it
// reads the core/v1 Secret a template references, in the run's namespace,
// with one Get per reference. Give it the manager's APIReader: a cached
// client would make the manager list and watch every Secret of the
// cluster, and would need list and watch permissions where get is enough.
type SecretReader struct {
	Reader client.Reader
}

var _ prometheus.SecretResolver = SecretReader{}

// SecretValue returns the value under ref.Key of Secret ref.Name in
// namespace. The caller's error names the namespace, Secret and key
// ("bearer token from Secret shop/prom key token: not found"), so these
// errors say only what is wrong with them.
func (s SecretReader) SecretValue(ctx context.Context, namespace string, ref v1alpha1.SecretKeyRef) (string, error) {
	sec := &corev1.Secret{}
	if err := s.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", errors.New("not found")
		}
		// Forbidden and the like: the API server's message names the
		// service account and the permission.
		return "", err
	}
	v, ok := sec.Data[ref.Key]
	if !ok {
		if len(sec.Data) == 0 {
			return "", errors.New("no such key: the Secret has no data")
		}
		keys := make([]string, 0, len(sec.Data))
		for k := range sec.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return "", fmt.Errorf("no such key; the Secret has %s", strings.Join(keys, ", "))
	}
	return string(v), nil
}
