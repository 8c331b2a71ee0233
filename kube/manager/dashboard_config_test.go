package manager

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestConfigDashboard(t *testing.T) {
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Dashboard; !d.On() || d.Path != "/dashboard" || d.Address != "" || d.ReadOnly || c.Dashboard.proxy() != nil {
		t.Fatalf("default dashboard %+v: want on at /dashboard on the HTTP listener, no proxy", d)
	}
	c, err = ParseConfig([]byte(`dashboard:
  path: /ops/sluice
  address: 127.0.0.1:8443
  readOnly: true
  tls: {certFile: tls.crt, keyFile: tls.key, clientCAFile: proxy-ca.crt}
  authenticatingProxy:
    userHeaders: [X-Forwarded-User]
    groupHeaders: [X-Forwarded-Groups]
    trustedNetworks: [127.0.0.1/32, "::1/128"]
    clientCertificate: true
    allowedNames: [oauth2-proxy]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	p := c.Dashboard.proxy()
	r := httptest.NewRequest("GET", "/ops/sluice/", nil)
	r.RemoteAddr = "[::1]:5000"
	if p == nil || p.UserHeaders[0] != "X-Forwarded-User" || !p.Trusted(r) {
		t.Fatalf("proxy %+v: want the headers and loopback trusted", p)
	}
	r.RemoteAddr = "10.0.0.7:5000"
	if p.Trusted(r) {
		t.Fatal("a request from 10.0.0.7 without a certificate is trusted")
	}

	for _, tc := range []struct{ yaml, want string }{
		{"dashboard: {enabled: false, address: nowhere}\n", ""},
		{"dashboard: {path: \"off\", address: nowhere}\n", ""},
		{"dashboard: {path: dashboard}\n", `dashboard.path "dashboard"`},
		{"dashboard: {address: nowhere}\n", `dashboard.address: "nowhere"`},
		{"dashboard: {authenticatingProxy: {trustedNetworks: [10.0.0.0/33]}}\n", "trustedNetworks[0]"},
		{"dashboard: {authenticatingProxy: {clientCertificate: true}}\n", "needs dashboard.tls.clientCAFile"},
		{"dashboard: {address: ':8443', tls: {certFile: a}}\n", "certFile and keyFile are required"},
	} {
		c, err := ParseConfig([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
