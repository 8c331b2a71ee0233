package manager

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "platform")
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("defaults do not pass Check: %v", err)
	}
	if c.Namespace != "platform" || c.DefaultNamespace != "default" || c.XDS.Address != ":18000" ||
		!c.LeaderElectionEnabled() || !c.IstioEnabled() || c.LeaderElection.LeaseDuration.Duration != 15*time.Second || c.Git != nil {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "xds:\n  adress: ':1'\n", `unknown field "xds.adress"`},
		{"bad address", "http:\n  metricsAddress: localhost\n", "http.metricsAddress"},
		{"bad namespace", "watchNamespaces: [shop, Shop]\n", "watchNamespaces[1]"},
		{"lease order", "leaderElection:\n  leaseDuration: 5s\n  renewDeadline: 10s\n", "leaderElection: want leaseDuration > renewDeadline"},
		{"git without url", "git:\n  path: rollouts\n", "git.url: required"},
		{"git two refs", "git:\n  url: file:///r\n  branch: main\n  tag: v1\n", "git: set exactly one of branch, tag and commit"},
		{"tls half", "xds:\n  certFile: c.pem\n", "xds: certFile and keyFile go together"},
		{"bad duration", "reconcile:\n  ackPollInterval: soon\n", "reconcile.ackPollInterval: time: invalid duration"},
		{"bad type deep", "git:\n  url: file:///r\n  auth:\n    username: [a]\n", "git.auth.username"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				err = c.Check()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigTurnsOff(t *testing.T) {
	t.Parallel()
	c, err := ParseConfig([]byte("leaderElection:\n  enabled: false\nistio:\n  enabled: false\nhttp:\n  metricsAddress: \"0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if c.LeaderElectionEnabled() || c.IstioEnabled() || c.HTTP.MetricsAddress != "0" {
		t.Fatalf("settings not honoured: %+v", c)
	}
}
