package analysisrun

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestProviders runs AnalysisRuns through the controller with configured
// providers: a run naming one measures through it with its bearer token;
// a run with an address of its own sends only its namespace's Secret,
// never a configured token; a provider not configured, or an address
// where template addresses are off, ends the run in Error at once, with
// nothing sent.
func TestProviders(t *testing.T) {
	t.Parallel()
	const operatorToken = "operator-token"
	cases := []struct {
		name     string
		service  string
		allow    bool
		prov     func(configured, own string) v1alpha1.PrometheusProvider
		wantRun  v1alpha1.AnalysisPhase
		wantMsg  []string // in the run's message
		wantAuth map[string]string
	}{{
		name: "a named provider", service: "named",
		prov:     func(string, string) v1alpha1.PrometheusProvider { return v1alpha1.PrometheusProvider{Name: "metrics"} },
		wantRun:  v1alpha1.AnalysisSuccessful,
		wantAuth: map[string]string{"configured": "Bearer " + operatorToken},
	}, {
		name: "the template's own address", service: "own", allow: true,
		prov: func(_, own string) v1alpha1.PrometheusProvider {
			return v1alpha1.PrometheusProvider{Address: own, Auth: &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}}}
		},
		wantRun:  v1alpha1.AnalysisSuccessful,
		wantAuth: map[string]string{"own": "Bearer namespace-token"},
	}, {
		name: "a provider not configured", service: "unknown",
		prov:    func(string, string) v1alpha1.PrometheusProvider { return v1alpha1.PrometheusProvider{Name: "team-b"} },
		wantRun: v1alpha1.AnalysisError,
		wantMsg: []string{"cannot run: metric success-rate:", `prometheus provider "team-b" is not configured (configured: metrics)`},
	}, {
		name: "an own address where they are off", service: "refused",
		prov: func(_, own string) v1alpha1.PrometheusProvider {
			return v1alpha1.PrometheusProvider{Address: own}
		},
		wantRun: v1alpha1.AnalysisError,
		wantMsg: []string{"prometheus.allowTemplateAddresses is off", "configured: metrics"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := cluster(t)
			ns := newNamespace(t, c)
			configured := newProxy(t, prometheusURL(t))
			own := newProxy(t, prometheusURL(t))
			proxies := map[string]*promProxy{"configured": configured, "own": own}
			createSecret(t, c, ns, "prom", map[string]string{"token": "namespace-token"})
			if tc.wantRun == v1alpha1.AnalysisSuccessful {
				serve(t, tc.service, 0)
			}
			opts := Options{Prometheus: prometheus.Options{
				Providers: []prometheus.Provider{{
					Name: "metrics", Address: configured.URL,
					BearerToken: func() (string, error) { return operatorToken, nil },
				}},
				AllowTemplateAddresses: tc.allow,
			}}
			startManager(t, ns, opts)
			m := successMetric(2)
			p := tc.prov(configured.URL, own.URL)
			p.Query, p.Timeout = m.Provider.Prometheus.Query, m.Provider.Prometheus.Timeout
			m.Provider.Prometheus = &p
			key := createRun(t, c, ns, tc.service, m)

			run := waitRun(t, c, key, "the run completes", completed)
			if run.Status.Phase != tc.wantRun {
				t.Fatalf("want %s:\n%s", tc.wantRun, dump(run))
			}
			for _, w := range tc.wantMsg {
				if !strings.Contains(run.Status.Message, w) {
					t.Errorf("run message %q does not contain %q", run.Status.Message, w)
				}
			}
			for name, px := range proxies {
				_, total := px.queries()
				want, sent := tc.wantAuth[name]
				switch {
				case !sent && total > 0:
					t.Errorf("the %s server received %d queries, want none", name, total)
				case sent && (total == 0 || !px.sawOnlyAuthorization(want)):
					t.Errorf("the %s server received %d queries with Authorization %v, want only %q", name, total, px.authorizations(), want)
				}
			}
			if tc.wantRun == v1alpha1.AnalysisError {
				waitEvents(t, c, key, []string{"Warning RunError"})
			}
		})
	}
}

// TestSchemaRejectsMixedProviders: the API server itself (the CRD's CEL
// rules) refuses a provider that names a configured provider and also
// brings an address or credentials of its own.
func TestSchemaRejectsMixedProviders(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := newNamespace(t, c)
	token := &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}}
	cases := []struct {
		name string
		prov v1alpha1.PrometheusProvider
		want string
	}{
		{"name and address", v1alpha1.PrometheusProvider{Name: "metrics", Address: "http://elsewhere:9090"}, "name and address exclude each other"},
		{"name and auth", v1alpha1.PrometheusProvider{Name: "metrics", Auth: token}, "auth, tls, headers and insecureSkipVerify describe the template's own server and need address"},
		{"default and a header", v1alpha1.PrometheusProvider{Headers: []v1alpha1.HTTPHeader{{Name: "X-Scope-OrgID", Value: "team-b"}}}, "need address"},
		{"own address and auth", v1alpha1.PrometheusProvider{Address: "http://own:9090", Auth: token}, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := successMetric(1)
			tc.prov.Query = m.Provider.Prometheus.Query
			m.Provider.Prometheus = &tc.prov
			run, err := analysis.NewRun(fmt.Sprintf("schema-%d", i), ns, []*v1alpha1.AnalysisTemplate{{ObjectMeta: metav1.ObjectMeta{Name: "gate"}, Spec: v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{m}}}}, []v1alpha1.Argument{{Name: "service", Value: "s"}, {Name: "canaryRevision", Value: "v2"}})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Create(context.Background(), run)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("create: %v, want it refused with %q", err, tc.want)
			}
		})
	}
}
