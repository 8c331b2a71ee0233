package clusterapi

import (
	"os"
	"path/filepath"
	"testing"
)

const twoClusters = `apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster: {server: "https://dev.example:6443"}
- name: prod
  cluster: {server: "https://prod.example:6443"}
users:
- name: alice-dev
  user: {token: dev-token}
- name: alice-prod
  user:
    token: prod-token
    as: release-bot
contexts:
- name: dev
  context: {cluster: dev, user: alice-dev}
- name: prod
  context: {cluster: prod, user: alice-prod, namespace: shop}
`

func TestLoadKubeconfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoClusters), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		context                       string
		host, namespace, user, actsAs string
	}{
		{context: "", host: "https://dev.example:6443", namespace: "default", user: "alice-dev"},
		{context: "prod", host: "https://prod.example:6443", namespace: "shop", user: "alice-prod", actsAs: "release-bot"},
	} {
		kc, err := LoadKubeconfig(path, tc.context)
		if err != nil {
			t.Fatalf("context %q: %v", tc.context, err)
		}
		if kc.Config.Host != tc.host || kc.Namespace != tc.namespace || kc.User != tc.user || kc.Config.Impersonate.UserName != tc.actsAs {
			t.Errorf("context %q: host %s, namespace %s, user %s, acting as %q; want %s, %s, %s, %q", tc.context,
				kc.Config.Host, kc.Namespace, kc.User, kc.Config.Impersonate.UserName, tc.host, tc.namespace, tc.user, tc.actsAs)
		}
	}
	for name, args := range map[string][2]string{
		"missing file":    {filepath.Join(t.TempDir(), "none"), ""},
		"unknown context": {path, "staging"},
	} {
		if _, err := LoadKubeconfig(args[0], args[1]); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
