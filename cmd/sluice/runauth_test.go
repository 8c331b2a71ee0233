package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/sluicehq/sluice/standalone/config"
)

// sluice run fails closed: no API token (or an empty one) is a usage error
// naming the key, before anything listens.
func TestRunFailsClosed(t *testing.T) {
	t.Setenv("SLUICE_EMPTY_TOKEN", "")
	dir := t.TempDir()
	base := []string{"run", "--git-url", "file://" + filepath.Join(dir, "none"), "--state-dir", filepath.Join(dir, "state"),
		"--http-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no token", nil, "http.tokens: no API token configured"},
		{"empty token", []string{"--token-env", "SLUICE_EMPTY_TOKEN"}, "http.token: the value is empty"},
		{"unset token variable", []string{"--token-env", "SLUICE_NO_SUCH_VARIABLE"}, "http.token: environment variable SLUICE_NO_SUCH_VARIABLE is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append(base, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q (stdout %q); want exit %d naming %q", code, stderr, stdout, exitUsage, tc.want)
			}
		})
	}
}

func TestTokenCommand(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI("token", "alice", "--role", "operate")
	if code != 0 || !strings.Contains(stdout, "- name: alice\n  role: operate\n  sha256: ") || !strings.Contains(stdout, "# sluice_") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI("token", "alice", "--role", "admin"); code != exitUsage || !strings.Contains(stderr, `token.role: "admin"`) {
		t.Errorf("role admin: exit %d, stderr %q", code, stderr)
	}
}

func TestXDSExposure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr, cert, ca string
		insecure       bool
		ok             bool
	}{
		{"127.0.0.1:18000", "", "", false, true},
		{"[::1]:18000", "", "", false, true},
		{"localhost:18000", "", "", false, true},
		{"0.0.0.0:18000", "", "", false, false},
		{":18000", "", "", false, false},
		{"10.1.2.3:18000", "tls.crt", "", false, false},
		{"10.1.2.3:18000", "tls.crt", "ca.pem", false, true},
		{"0.0.0.0:18000", "", "", true, true},
	} {
		err := checkXDSExposure(config.XDS{Address: tc.addr, CertFile: tc.cert, ClientCAFile: tc.ca}, tc.insecure, logr.Discard())
		if (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok %v", tc, err, tc.ok)
		}
	}
}
