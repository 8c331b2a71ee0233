package prometheus

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestProviderPolicy: a template reaches a configured provider by name (or
// the default one) with that provider's credentials, or, where allowed,
// its own address with its own credentials only; everything else is an
// Error that names the problem, and nothing is sent.
func TestProviderPolicy(t *testing.T) {
	t.Parallel()
	configured := &fakeProm{body: vectorBody}
	confSrv := httptest.NewServer(configured)
	defer confSrv.Close()
	def := &fakeProm{body: vectorBody}
	defSrv := httptest.NewServer(def)
	defer defSrv.Close()
	own := &fakeProm{body: vectorBody}
	ownSrv := httptest.NewServer(own)
	defer ownSrv.Close()

	providers := []Provider{
		{Name: "default", Address: defSrv.URL, BasicUsername: "ops", BasicPassword: value("pw")},
		{Name: "team-a", Address: confSrv.URL, BearerToken: value("operator-token"),
			Headers: []v1alpha1.HTTPHeader{{Name: "X-Scope-OrgID", Value: "team-a"}}},
		{Name: "broken", Address: confSrv.URL, BearerToken: func() (string, error) { return "", errors.New("open /run/token: no such file") }},
	}
	sec := secrets{"shop/prom/token": "namespace-token"}
	cases := []struct {
		name    string
		allow   bool
		prov    v1alpha1.PrometheusProvider
		server  *fakeProm
		auth    string // Authorization the server receives
		tenant  string // X-Scope-OrgID it receives
		err     string
		checkOK bool // CheckRun accepts it
	}{
		{name: "named", prov: v1alpha1.PrometheusProvider{Name: "team-a"}, server: configured, auth: "Bearer operator-token", tenant: "team-a", checkOK: true},
		{name: "default", prov: v1alpha1.PrometheusProvider{}, server: def, auth: "Basic b3BzOnB3", checkOK: true},
		{name: "default by name", prov: v1alpha1.PrometheusProvider{Name: "default"}, server: def, auth: "Basic b3BzOnB3", checkOK: true},
		{name: "unknown name", prov: v1alpha1.PrometheusProvider{Name: "team-b"},
			err: `prometheus provider "team-b" is not configured (configured: broken, default, team-a)`},
		{name: "own address refused by default", prov: v1alpha1.PrometheusProvider{Address: "OWN"},
			err: "templates may not choose their own Prometheus here (prometheus.allowTemplateAddresses is off)"},
		{name: "own address without credentials", allow: true, prov: v1alpha1.PrometheusProvider{Address: "OWN"}, server: own, auth: "", checkOK: true},
		{name: "own address with the namespace's Secret", allow: true, server: own, auth: "Bearer namespace-token", checkOK: true,
			prov: v1alpha1.PrometheusProvider{Address: "OWN", Auth: &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "token")}}},
		{name: "name and address", allow: true, prov: v1alpha1.PrometheusProvider{Name: "team-a", Address: "OWN"}, err: "exclude each other"},
		{name: "auth with a name", prov: v1alpha1.PrometheusProvider{Name: "team-a", Auth: &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "token")}},
			err: "auth set without address"},
		{name: "a tenant header on a configured provider", prov: v1alpha1.PrometheusProvider{Headers: []v1alpha1.HTTPHeader{{Name: "X-Scope-OrgID", Value: "team-b"}}},
			err: "headers set without address"},
		{name: "insecureSkipVerify on a configured provider", prov: v1alpha1.PrometheusProvider{Name: "team-a", InsecureSkipVerify: true},
			err: "insecureSkipVerify set without address"},
		{name: "credential unreadable", prov: v1alpha1.PrometheusProvider{Name: "broken"}, checkOK: true,
			err: `prometheus provider "broken": bearer token: open /run/token: no such file`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: each case looks at the servers' last request.
			m := New(Options{Providers: providers, AllowTemplateAddresses: tc.allow, Secrets: sec})
			defer m.Close()
			if tc.prov.Address == "OWN" {
				tc.prov.Address = ownSrv.URL
			}
			counts := map[*fakeProm]int{}
			for _, f := range []*fakeProm{configured, def, own} {
				counts[f] = requests(f)
			}
			res := m.Measure(context.Background(), query(&tc.prov))
			run := &v1alpha1.AnalysisRun{Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "m", Provider: v1alpha1.MetricProvider{Prometheus: &tc.prov}}}}}
			if err := m.CheckRun(run); (err == nil) != tc.checkOK || (err != nil && !strings.Contains(err.Error(), "metric m: ")) {
				t.Errorf("CheckRun: %v, want ok=%v", err, tc.checkOK)
			}
			if tc.err != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", res.Err, tc.err)
				}
				for f, n := range counts {
					if requests(f) != n {
						t.Fatalf("a request was sent: %v", f.last())
					}
				}
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			for f, n := range counts {
				if want := map[bool]int{true: n + 1, false: n}[f == tc.server]; requests(f) != want {
					t.Fatalf("a server got %d requests, want %d", requests(f)-n, want-n)
				}
			}
			h := tc.server.last()
			if h.Get("Authorization") != tc.auth || h.Get("X-Scope-Orgid") != tc.tenant {
				t.Errorf("Authorization %q, X-Scope-OrgID %q; want %q, %q", h.Get("Authorization"), h.Get("X-Scope-Orgid"), tc.auth, tc.tenant)
			}
		})
	}
}

func requests(f *fakeProm) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.headers)
}

// TestProviderCredentialRotates: a configured credential is read for each
// measurement, so a rotated file takes effect without a restart.
func TestProviderCredentialRotates(t *testing.T) {
	t.Parallel()
	f := &fakeProm{body: vectorBody}
	srv := httptest.NewServer(f)
	defer srv.Close()
	tok := "one"
	m := New(Options{Providers: []Provider{{Name: "default", Address: srv.URL, BearerToken: func() (string, error) { return tok, nil }}}})
	defer m.Close()
	for _, next := range []string{"one", "two"} {
		tok = next
		if res := m.Measure(context.Background(), query(&v1alpha1.PrometheusProvider{})); res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := f.last().Get("Authorization"); got != "Bearer "+next {
			t.Fatalf("Authorization %q, want Bearer %s", got, next)
		}
	}
}
