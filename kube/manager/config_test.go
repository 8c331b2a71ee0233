package manager

import (
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/sluicehq/sluice/gitsync"
)

func TestConfigDefaults(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "platform")
	t.Setenv("POD_NAME", "sluice-controller-5d8f9c7b6-x2x4z")
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("defaults do not pass Check: %v", err)
	}
	if c.Namespace != "platform" || c.DefaultNamespace != "default" || c.XDS.Address != ":18000" ||
		!c.LeaderElectionEnabled() || !c.IstioEnabled() || c.LeaderElection.LeaseDuration.Duration != 15*time.Second || c.Git != nil ||
		c.KubeAPI != (KubeAPI{QPS: 50, Burst: 1000}) {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.XDS.ReplicaName != "sluice-controller-5d8f9c7b6-x2x4z" || c.XDS.ReportInterval.Duration != 250*time.Millisecond || c.XDS.ReportHeartbeat.Duration != 10*time.Second {
		t.Fatalf("xds report defaults: %+v", c.XDS)
	}
}

// Without $POD_NAME (outside a cluster) the replica is named after the
// host, and a name in the file wins over both.
func TestConfigReplicaName(t *testing.T) {
	t.Setenv("POD_NAME", "")
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.ReplicaName != strings.ToLower(host) {
		t.Errorf("replica name %q without POD_NAME, want the host name %q", c.XDS.ReplicaName, host)
	}
	t.Setenv("POD_NAME", "pod-a")
	c, err = ParseConfig([]byte("xds:\n  address: ':1'\n  replicaName: replica-b\n  reportInterval: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if c.XDS.ReplicaName != "replica-b" || c.XDS.Address != ":1" || c.XDS.ReportInterval.Duration != time.Second {
		t.Errorf("xds section %+v, want the file's replicaName, address and reportInterval", c.XDS)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "xds:\n  adress: ':1'\n", `unknown field "xds.adress"`},
		{"bad address", "http:\n  metricsAddress: localhost\n", "http.metricsAddress"},
		{"pprof beyond loopback", "http:\n  insecurePprofAddress: \":6060\"\n", "http.insecurePprofAddress"},
		{"pprof on a routable address", "http:\n  insecurePprofAddress: 10.0.0.1:6060\n", "http.insecurePprofAddress"},
		{"bad namespace", "watchNamespaces: [shop, Shop]\n", "watchNamespaces[1]"},
		{"lease order", "leaderElection:\n  leaseDuration: 5s\n  renewDeadline: 10s\n", "leaderElection: want leaseDuration > renewDeadline"},
		{"git without url", "git:\n  path: rollouts\n", "git.url: required"},
		{"git two refs", "git:\n  url: file:///r\n  branch: main\n  tag: v1\n", "git: set exactly one of branch, tag and commit"},
		{"tls half", "xds:\n  certFile: c.pem\n", "xds: certFile and keyFile go together"},
		{"bad duration", "reconcile:\n  ackPollInterval: soon\n", "reconcile.ackPollInterval: time: invalid duration"},
		{"bad type deep", "git:\n  url: file:///r\n  auth:\n    username: [a]\n", "git.auth.username"},
		{"bad replica name", "xds:\n  replicaName: Pod_A\n", "xds.replicaName: \"Pod_A\""},
		{"report heartbeat below interval", "xds:\n  reportInterval: 5s\n  reportHeartbeat: 1s\n", "xds: want 0 < reportInterval <= reportHeartbeat"},
		{"bad report duration", "xds:\n  reportHeartbeat: often\n", "xds.reportHeartbeat: time: invalid duration"},
		{"burst without room", "kubeAPI:\n  qps: 20\n  burst: -1\n", "kubeAPI.burst: -1"},
		{"qps not a number", "kubeAPI:\n  qps: fast\n", "kubeAPI.qps"},
		{"prometheus provider unknown key", "prometheus:\n  providers:\n  - {name: a, adress: http://a:9090}\n", `unknown field "prometheus.providers[0].adress"`},
		{"prometheus providers named twice", "prometheus:\n  providers:\n  - {name: a, address: http://a:9090}\n  - {name: a, address: http://b:9090}\n", `prometheus.providers[1].name: "a" is used twice`},
		{"gitSources limit negative", "gitSources:\n  limits:\n    maxPackBytes: -1\n", "gitSources.limits.maxPackBytes: -1: must not be negative"},
		{"gitSources limit not a number", "gitSources:\n  limits:\n    maxFiles: many\n", "gitSources.limits.maxFiles"},
		{"gitSources limit unknown", "gitSources:\n  limits:\n    maxPackSize: 1\n", `unknown field "gitSources.limits.maxPackSize"`},
		{"git limit negative", "git:\n  url: file:///r\n  limits:\n    maxBlobBytes: -2\n", "git.limits.maxBlobBytes: -2: must not be negative"},
		{"prometheus default twice", "prometheus:\n  address: http://a:9090\n  providers:\n  - {name: default, address: http://b:9090}\n", "prometheus.providers[0].name: \"default\": prometheus.address"},
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

// The prometheus section is `sluice run`'s: named providers with
// credentials from the environment or files (a mounted Secret), the
// address as the provider named default, template addresses off unless
// allowed.
func TestConfigPrometheusProviders(t *testing.T) {
	t.Setenv("SLUICE_TEST_PROM_TOKEN", "t0ken")
	c, err := ParseConfig([]byte(`
prometheus:
  address: http://prometheus.monitoring:9090
  providers:
  - name: team-a
    address: https://mimir.monitoring:8080/prometheus
    bearerToken: {env: SLUICE_TEST_PROM_TOKEN}
    headers: [{name: X-Scope-OrgID, value: team-a}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	opts := c.Prometheus.Options()
	if len(opts.Providers) != 2 || opts.AllowTemplateAddresses || opts.Providers[0].Name != "default" || opts.Providers[1].Name != "team-a" {
		t.Fatalf("providers %+v", opts)
	}
	if tok, err := opts.Providers[1].BearerToken(); tok != "t0ken" || err != nil {
		t.Fatalf("team-a token %q, %v", tok, err)
	}
}

// gitSources.limits are the operator's fetch limits for every GitSource;
// unset ones take gitsync's defaults.
func TestConfigGitSourcesLimits(t *testing.T) {
	t.Parallel()
	c, err := ParseConfig([]byte("gitSources:\n  limits:\n    maxPackBytes: 1048576\n    maxFiles: 500\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	got, err := c.GitSources.FetchLimits()
	if want := (gitsync.FetchLimits{MaxPackBytes: 1 << 20, MaxFiles: 500}); err != nil || got != want {
		t.Errorf("gitSources.limits = %+v, %v; want %+v", got, err, want)
	}
	c, err = ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.GitSources.FetchLimits(); err != nil || got != (gitsync.FetchLimits{}) {
		t.Errorf("no gitSources.limits: %+v, %v; want zero (gitsync's defaults)", got, err)
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

// The rate limit reaches a rest.Config loaded from a kubeconfig (which
// never carries one), is turned off by a negative qps, and leaves alone a
// rest.Config whose builder chose a limit of its own.
func TestKubeAPIApply(t *testing.T) {
	t.Parallel()
	limiter := flowcontrol.NewFakeAlwaysRateLimiter()
	tests := []struct {
		name       string
		yaml       string
		cfg        rest.Config
		qps        float32
		burst      int
		ownLimiter bool
	}{
		{name: "default", cfg: rest.Config{Host: "https://k8s"}, qps: 50, burst: 1000},
		{name: "configured", yaml: "kubeAPI:\n  qps: 200\n  burst: 400\n", cfg: rest.Config{Host: "https://k8s"}, qps: 200, burst: 400},
		{name: "off", yaml: "kubeAPI:\n  qps: -1\n", cfg: rest.Config{Host: "https://k8s"}, qps: -1, burst: 1000},
		{name: "caller's qps", cfg: rest.Config{Host: "https://k8s", QPS: 7, Burst: 9}, qps: 7, burst: 9},
		{name: "caller's limiter", cfg: rest.Config{Host: "https://k8s", RateLimiter: limiter}, ownLimiter: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConfig([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Check(); err != nil {
				t.Fatal(err)
			}
			in := tc.cfg
			got := c.KubeAPI.Apply(&in)
			if got == &in || in.QPS != tc.cfg.QPS || in.Burst != tc.cfg.Burst {
				t.Fatalf("Apply changed its argument: %+v", in)
			}
			if got.QPS != tc.qps || got.Burst != tc.burst || (got.RateLimiter == limiter) != tc.ownLimiter || got.Host != in.Host {
				t.Fatalf("Apply: qps %v burst %d limiter %v host %q; want qps %v burst %d, own limiter %v",
					got.QPS, got.Burst, got.RateLimiter, got.Host, tc.qps, tc.burst, tc.ownLimiter)
			}
		})
	}
}
