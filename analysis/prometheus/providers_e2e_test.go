package prometheus

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// gate is a reverse proxy in front of the real Prometheus that records
// the Authorization header of every request and, with a token, answers
// 401 to requests without it, as an authenticating proxy would.
type gate struct {
	token string
	mu    sync.Mutex
	auth  []string
}

func newGate(t *testing.T, promURL, token string) (*gate, string) {
	t.Helper()
	target, err := url.Parse(promURL)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{token: token}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.auth = append(g.auth, r.Header.Get("Authorization"))
		g.mu.Unlock()
		if g.token != "" && r.Header.Get("Authorization") != "Bearer "+g.token {
			http.Error(w, `{"status":"error","errorType":"unauthorized","error":"no or wrong token"}`, http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL
}

func (g *gate) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.auth...)
}

// TestNamedProviderCredentials runs analysis against the real Prometheus
// through providers: a template naming a configured provider gets data
// through a proxy that requires the provider's bearer token, and the
// token reaches that host; a template with an address of its own, in
// the same Measurer, never sends that token, and where template
// addresses are off it sends nothing at all.
func TestNamedProviderCredentials(t *testing.T) {
	t.Parallel()
	e := env(t)
	e.target.AddWorkload("providers", ns, "v2", 0, 30)
	const token = "operator-secret-token"
	secured, securedURL := newGate(t, e.prom.URL, token)
	open, openURL := newGate(t, e.prom.URL, "")
	waitForData(t, e.prom.URL, `sum(rate(istio_requests_total{destination_service_name="providers"}[5s])) > 0`)
	providers := []Provider{{Name: "metrics", Address: securedURL, BearerToken: value(token)}}

	named := metric("success-rate", successRate, 2)
	named.Provider.Prometheus.Name = "metrics"
	ownAddr := metric("success-rate", successRate, 2)
	ownAddr.Provider.Prometheus.Address = openURL

	cases := []struct {
		name   string
		allow  bool
		metric v1alpha1.Metric
		phase  v1alpha1.AnalysisPhase
		msg    string
		gate   *gate
	}{
		{"named provider", false, named, v1alpha1.AnalysisSuccessful, "", secured},
		{"own address", true, ownAddr, v1alpha1.AnalysisSuccessful, "", open},
		{"own address not allowed", false, ownAddr, v1alpha1.AnalysisFailed, "prometheus.allowTemplateAddresses is off", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(open.seen())
			m := tc.metric
			m.ConsecutiveErrorLimit = new(int32(0))
			run := newRun(t, args("providers"), m)
			drive(t, run, New(Options{Providers: providers, AllowTemplateAddresses: tc.allow}), nil)
			r := metricResult(t, run, "success-rate")
			if run.Status.Phase != tc.phase || !strings.Contains(r.Message+run.Status.Message, tc.msg) {
				t.Fatalf("want %s (%q):\n%s", tc.phase, tc.msg, dump(run))
			}
			if tc.phase == v1alpha1.AnalysisSuccessful && r.LastValue != "[1]" {
				t.Errorf("success rate %s, want [1] (data from Prometheus)", r.LastValue)
			}
			if tc.gate == secured {
				for _, a := range secured.seen() {
					if a != "Bearer "+token {
						t.Errorf("the configured host received Authorization %q", a)
					}
				}
			}
			if tc.gate == nil && len(open.seen()) != before {
				t.Errorf("a refused template address received %d requests", len(open.seen())-before)
			}
		})
	}
	if len(secured.seen()) == 0 || len(open.seen()) == 0 {
		t.Fatalf("requests: configured host %d, template's host %d; want some at each", len(secured.seen()), len(open.seen()))
	}
	for _, a := range open.seen() {
		if a != "" {
			t.Fatalf("the template's own address received Authorization %q", a)
		}
	}
}
