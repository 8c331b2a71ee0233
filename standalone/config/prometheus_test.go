package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrometheusProviders(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_PROM_TOKEN", "t0ken")
	t.Setenv("SLUICE_TEST_PROM_PASSWORD", "pw")
	c, err := Parse([]byte(`
git: {url: file:///srv/rollouts.git}
prometheus:
  address: http://prometheus:9090
  providers:
  - name: team-a
    address: https://mimir.example.com/prometheus
    bearerToken: {env: SLUICE_TEST_PROM_TOKEN}
    tls: {caFile: ` + ca + `, serverName: mimir}
    headers:
    - {name: X-Scope-OrgID, value: team-a}
  - name: thanos
    address: http://thanos:9090
    basicAuth: {username: sluice, password: {env: SLUICE_TEST_PROM_PASSWORD}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if c.Prometheus.AllowTemplateAddresses {
		t.Error("template addresses allowed by default")
	}
	opts := c.Prometheus.Options()
	if len(opts.Providers) != 3 || opts.AllowTemplateAddresses {
		t.Fatalf("options %+v", opts)
	}
	def, a, th := opts.Providers[0], opts.Providers[1], opts.Providers[2]
	if def.Name != "default" || def.Address != "http://prometheus:9090" || def.BearerToken != nil || def.BasicPassword != nil {
		t.Errorf("prometheus.address: %+v, want the provider default without credentials", def)
	}
	tok, err := a.BearerToken()
	if a.Name != "team-a" || tok != "t0ken" || err != nil || a.ServerName != "mimir" || len(a.Headers) != 1 || a.Headers[0].Value != "team-a" {
		t.Errorf("team-a: %+v, token %q %v", a, tok, err)
	}
	if pem, err := a.CA(); err != nil || !strings.HasPrefix(pem, "-----BEGIN") {
		t.Errorf("team-a CA %q, %v", pem, err)
	}
	if pw, err := th.BasicPassword(); th.BasicUsername != "sluice" || pw != "pw" || err != nil {
		t.Errorf("thanos basic auth %q %q %v", th.BasicUsername, pw, err)
	}
	// Read at each measurement: a changed or vanished value shows at once.
	t.Setenv("SLUICE_TEST_PROM_TOKEN", "")
	if _, err := a.BearerToken(); err == nil || !strings.Contains(err.Error(), "prometheus.providers[0].bearerToken: the value is empty") {
		t.Errorf("empty token: %v", err)
	}
}

func TestPrometheusCheckNamesEveryKey(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(`
git: {url: file:///srv/rollouts.git}
prometheus:
  address: prometheus:9090
  providers:
  - {name: team-a, address: http://a:9090, bearerToken: {env: A}, basicAuth: {username: u, password: {file: p}}}
  - {name: team-a, address: http://b:9090}
  - {name: Team_B, address: "http://"}
  - {name: default, address: http://c:9090, tls: {certFile: c.pem}}
  - address: http://d:9090
    bearerToken: {env: A, file: b}
    headers: [{name: Authorization, value: x}, {name: "X Org", value: y}]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check()
	if err == nil {
		t.Fatal("Check accepted a broken prometheus section")
	}
	for _, want := range []string{
		`prometheus.address: "prometheus:9090": want an http(s) URL`,
		"prometheus.providers[0]: set bearerToken or basicAuth, not both",
		`prometheus.providers[1].name: "team-a" is used twice`,
		`prometheus.providers[2].name: "Team_B": a lowercase RFC 1123 label`,
		`prometheus.providers[2].address: "http://": want an http(s) URL`,
		`prometheus.providers[3].name: "default": prometheus.address (or --prometheus-url) is already the provider named default`,
		"prometheus.providers[3].tls: certFile and keyFile go together",
		"prometheus.providers[4].name: required",
		"prometheus.providers[4].bearerToken: set exactly one of env and file",
		"prometheus.providers[4].headers[0].name: conflicts with bearerToken",
		`prometheus.providers[4].headers[1].name: "X Org": not an HTTP header name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v\nwant it to mention %q", err, want)
		}
	}
}

func TestPrometheusUnknownKeys(t *testing.T) {
	t.Parallel()
	for _, bad := range []struct{ yaml, want string }{
		{"prometheus:\n  providers:\n  - {name: a, adress: http://a:9090}\n", `unknown field "adress"`},
		{"prometheus:\n  providers:\n  - name: a\n    address: http://a:9090\n    tls: {ca: x}\n", `unknown field "ca"`},
		{"prometheus:\n  allowTemplateAddress: true\n", `unknown field "allowTemplateAddress"`},
	} {
		if _, err := Parse([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", bad.yaml, err, bad.want)
		}
	}
}
