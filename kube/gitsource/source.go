package gitsource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Keys of a GitSource's spec.secretRef Secret (documented on the type).
const (
	KeyUsername     = "username"
	KeyPassword     = "password"
	KeyToken        = "token"
	KeyBearerToken  = "bearerToken"
	KeyCA           = "ca.crt"
	KeyIdentity     = "identity"
	KeyPassphrase   = "identity.passphrase"
	KeyKnownHosts   = "known_hosts"
	secretKindLabel = "spec.secretRef"
)

// errInvalid marks what is wrong with the spec or its Secret: Ready=False,
// InvalidSource, until someone fixes it.
var errInvalid = errors.New("invalid source")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// config is what an Applier of a GitSource is built from; equal configs
// need no restart.
type config struct {
	source    gitsync.Source
	writeBack gitsync.WriteBackOptions
}

// fingerprint identifies a config, as a hash so that the running
// Appliers' secrets are not kept twice: a changed spec or Secret gives
// another one.
func (c config) fingerprint() string {
	// Plain data (strings, bytes, durations): it cannot fail.
	b, _ := json.Marshal(struct {
		Source    gitsync.Source
		WriteBack gitsync.WriteBackOptions
	}{c.source, c.writeBack})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// readSecret reads the GitSource's Secret with one Get (never a list or
// watch: the controller may only get Secrets); nil without a secretRef.
func readSecret(ctx context.Context, r client.Reader, gs *v1alpha1.GitSource) (*corev1.Secret, error) {
	ref := gs.Spec.SecretRef
	if ref == nil {
		return nil, nil
	}
	sec := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: gs.Namespace, Name: ref.Name}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return nil, invalid("%s: Secret %s/%s not found", secretKindLabel, gs.Namespace, ref.Name)
	case err != nil:
		// Forbidden and the like: the API server's message names the
		// service account and the permission.
		return nil, fmt.Errorf("reading Secret %s/%s (%s): %w", gs.Namespace, ref.Name, secretKindLabel, err)
	}
	return sec, nil
}

// configOf builds the Applier's configuration from the spec and its
// Secret. file:// URLs read the controller's own disk (where other
// sources' mirrors are), so they are refused unless allowFile.
func configOf(gs *v1alpha1.GitSource, sec *corev1.Secret, allowFile bool) (config, error) {
	sp := &gs.Spec
	if strings.HasPrefix(sp.URL, "file://") && !allowFile {
		return config{}, invalid("spec.url: file:// URLs are not allowed in this cluster: they read the controller's own disk, " +
			"other sources' mirrors included; an operator allows them with gitSources.allowFileURLs: true in the controller's " +
			"configuration (for tests and single-tenant clusters), or use an https:// or ssh:// URL")
	}
	src := gitsync.Source{
		Name:   gitapply.GitSourceID(gs.Namespace, gs.Name),
		URL:    sp.URL,
		Branch: sp.Ref.Branch, Tag: sp.Ref.Tag, Commit: sp.Ref.Commit,
		Path: sp.Path,
	}
	if sp.Interval != nil {
		src.Interval = sp.Interval.Duration
	}
	if sp.Timeout != nil {
		src.Timeout = sp.Timeout.Duration
	}
	if sec != nil {
		d := sec.Data
		src.Auth = gitsync.Auth{
			Username:         string(d[KeyUsername]),
			Password:         string(d[KeyPassword]),
			Token:            string(d[KeyToken]),
			BearerToken:      string(d[KeyBearerToken]),
			CABundle:         d[KeyCA],
			SSHKey:           d[KeyIdentity],
			SSHKeyPassphrase: string(d[KeyPassphrase]),
			KnownHosts:       d[KeyKnownHosts],
		}
	}
	c := config{source: src}
	if wb := sp.WriteBack; wb != nil {
		c.writeBack = gitsync.WriteBackOptions{AuthorName: wb.AuthorName, AuthorEmail: wb.AuthorEmail}
	}
	return c, nil
}

// webhookSecret returns the push webhook's secret: the value under
// spec.webhookSecretKey of the Secret.
func webhookSecret(gs *v1alpha1.GitSource, sec *corev1.Secret) ([]byte, error) {
	key := gs.Spec.WebhookSecretKey
	if sec == nil {
		return nil, invalid("spec.webhookSecretKey %q is set but spec.secretRef is not", key)
	}
	v, ok := sec.Data[key]
	if !ok || len(v) == 0 {
		keys := make([]string, 0, len(sec.Data))
		for k := range sec.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return nil, invalid("spec.webhookSecretKey: Secret %s/%s has no key %q (it has %s)", sec.Namespace, sec.Name, key, strings.Join(keys, ", "))
	}
	return v, nil
}

// mirrorDir is where the GitSource's mirror lives under the state
// directory: one folder per namespace and name. Both are DNS names, so
// they are safe path elements already; filepath.Base and the check are
// for the day something else gets here.
func mirrorDir(stateDir, namespace, name string) (string, error) {
	for _, p := range []string{namespace, name} {
		if p == "" || p != filepath.Base(p) || p == "." || p == ".." {
			return "", fmt.Errorf("GitSource %s/%s: unusable as a folder name", namespace, name)
		}
	}
	return filepath.Join(stateDir, "gitsources", namespace, name), nil
}
