package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad configuration stops `sluice controller` before it touches a cluster,
// with exit 2 and the key at fault.
func TestControllerRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", write("typo.yaml", "xds:\n  adress: ':1'\n")}, `unknown field "xds.adress"`},
		{"bad duration", []string{"--config", write("dur.yaml", "reconcile:\n  ackPollInterval: soon\n")}, "reconcile.ackPollInterval"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"git flag without url", []string{"--git-path", "prod"}, "git.url: required"},
		{"bad address flag", []string{"--xds-address", "nowhere"}, "xds.address"},
		{"bad namespace flag", []string{"--watch-namespace", "Shop"}, "watchNamespaces[0]"},
		{"bad burst flag", []string{"--kube-api-qps", "20", "--kube-api-burst", "-1"}, "kubeAPI.burst: -1"},
		{"bad qps flag", []string{"--kube-api-qps", "fast"}, "kube-api-qps"},
		{"arguments", []string{"extra"}, "unknown command"},
		{"dashboard path taken", []string{"--dashboard-path", "/webhook/ui"}, `dashboard.path "/webhook/ui": /webhook is taken`},
		{"dashboard path", []string{"--dashboard-path", "/"}, `dashboard.path "/"`},
		{"dashboard proxy without trust", []string{"--config", write("proxy.yaml", "dashboard:\n  authenticatingProxy: {userHeaders: [X-User]}\n")}, "dashboard.authenticatingProxy: say how"},
		{"dashboard TLS on the shared listener", []string{"--config", write("tls.yaml", "dashboard:\n  tls: {certFile: a, keyFile: b}\n")}, "dashboard.tls: needs a listener"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := run(append([]string{"controller"}, tc.args...), &out, &errOut)
			if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut.String(), exitUsage, tc.want)
			}
		})
	}
}
