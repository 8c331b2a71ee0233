package validation

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestValidAnalysisTemplate(t *testing.T) {
	t.Parallel()
	checkErrors(t, ValidateAnalysisTemplate(template()), nil)
}

func metric(t *v1alpha1.AnalysisTemplate) *v1alpha1.Metric { return &t.Spec.Metrics[0] }

func prom(t *v1alpha1.AnalysisTemplate) *v1alpha1.PrometheusProvider {
	return t.Spec.Metrics[0].Provider.Prometheus
}

func TestAnalysisTemplateRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(t *v1alpha1.AnalysisTemplate)
		want   []string
	}{
		{"name required", func(t *v1alpha1.AnalysisTemplate) { t.Name = "" },
			[]string{"metadata.name: Required value"}},
		{"args unique", func(t *v1alpha1.AnalysisTemplate) {
			t.Spec.Args = append(t.Spec.Args, v1alpha1.ArgumentSpec{Name: "window"})
		}, []string{`spec.args[2].name: Duplicate value: "window"`}},
		{"arg name pattern", func(t *v1alpha1.AnalysisTemplate) {
			t.Spec.Args = append(t.Spec.Args, v1alpha1.ArgumentSpec{Name: "my-arg"})
		}, []string{`spec.args[2].name: Invalid value: "my-arg": must match ^[a-zA-Z_][a-zA-Z0-9_]*$`}},
		{"arg name required", func(t *v1alpha1.AnalysisTemplate) {
			t.Spec.Args = append(t.Spec.Args, v1alpha1.ArgumentSpec{})
		}, []string{`spec.args[2].name: Required value`}},
		{"built-in args not declared", func(t *v1alpha1.AnalysisTemplate) {
			t.Spec.Args = append(t.Spec.Args, v1alpha1.ArgumentSpec{Name: "service"})
		}, []string{`spec.args[2].name: Invalid value: "service": is supplied by Sluice on every run`}},
		{"metrics min items 1", func(t *v1alpha1.AnalysisTemplate) { t.Spec.Metrics = nil },
			[]string{"spec.metrics: Required value: must have at least 1 metric"}},
		{"metrics max items 32", func(t *v1alpha1.AnalysisTemplate) {
			for i := range 32 {
				m := t.Spec.Metrics[0]
				m.Name = "m" + strings.Repeat("x", i)
				t.Spec.Metrics = append(t.Spec.Metrics, m)
			}
		}, []string{"spec.metrics: Too many: 33: must have at most 32 items"}},
		{"metric name required", func(t *v1alpha1.AnalysisTemplate) { metric(t).Name = "" },
			[]string{"spec.metrics[0].name: Required value"}},
		{"metric name pattern", func(t *v1alpha1.AnalysisTemplate) { metric(t).Name = "success_rate" },
			[]string{`spec.metrics[0].name: Invalid value: "success_rate": must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`}},
		{"metric name max length 63", func(t *v1alpha1.AnalysisTemplate) { metric(t).Name = strings.Repeat("m", 64) },
			[]string{"spec.metrics[0].name: Too long: may not be more than 63"}},
		{"metric names unique", func(t *v1alpha1.AnalysisTemplate) { t.Spec.Metrics = append(t.Spec.Metrics, t.Spec.Metrics[0]) },
			[]string{`spec.metrics[1].name: Duplicate value: "success-rate"`}},
		{"interval positive", func(t *v1alpha1.AnalysisTemplate) { metric(t).Interval = dur("0s") },
			[]string{`spec.metrics[0].interval: Invalid value: "0s": must be greater than 0`}},
		{"count minimum 1", func(t *v1alpha1.AnalysisTemplate) { metric(t).Count = new(int32(0)) },
			[]string{"spec.metrics[0].count: Invalid value: 0: must be greater than or equal to 1"}},
		{"initialDelay not negative", func(t *v1alpha1.AnalysisTemplate) { metric(t).InitialDelay = dur("-1s") },
			[]string{`spec.metrics[0].initialDelay: Invalid value: "-1s": must not be negative`}},
		{"initialDelay zero allowed", func(t *v1alpha1.AnalysisTemplate) { metric(t).InitialDelay = dur("0s") },
			nil},
		{"failureLimit minimum 0", func(t *v1alpha1.AnalysisTemplate) { metric(t).FailureLimit = new(int32(-1)) },
			[]string{"spec.metrics[0].failureLimit: Invalid value: -1"}},
		{"inconclusiveLimit minimum 0", func(t *v1alpha1.AnalysisTemplate) { metric(t).InconclusiveLimit = new(int32(-1)) },
			[]string{"spec.metrics[0].inconclusiveLimit: Invalid value: -1"}},
		{"consecutiveErrorLimit minimum 0", func(t *v1alpha1.AnalysisTemplate) { metric(t).ConsecutiveErrorLimit = new(int32(-1)) },
			[]string{"spec.metrics[0].consecutiveErrorLimit: Invalid value: -1"}},
		{"a condition required", func(t *v1alpha1.AnalysisTemplate) { metric(t).SuccessCondition = "" },
			[]string{"spec.metrics[0].successCondition: Required value: at least one of successCondition or failureCondition must be set"}},
		{"failure condition alone is enough", func(t *v1alpha1.AnalysisTemplate) {
			metric(t).SuccessCondition, metric(t).FailureCondition = "", "result[0] < 0.9"
		}, nil},
		{"provider required", func(t *v1alpha1.AnalysisTemplate) { metric(t).Provider.Prometheus = nil },
			[]string{"spec.metrics[0].provider: Required value: a metric provider must be set"}},
		{"query required", func(t *v1alpha1.AnalysisTemplate) { prom(t).Query = "" },
			[]string{"spec.metrics[0].provider.prometheus.query: Required value"}},
		{"query args declared", func(t *v1alpha1.AnalysisTemplate) { prom(t).Query += " > {{args.treshold}} or {{args.treshold}}" },
			[]string{`spec.metrics[0].provider.prometheus.query: Invalid value: "{{args.treshold}}": argument "treshold" is not declared`}},
		{"query placeholders are args", func(t *v1alpha1.AnalysisTemplate) { prom(t).Query += " > {{ .Values.x }}" },
			[]string{`spec.metrics[0].provider.prometheus.query: Invalid value: "{{ .Values.x }}": placeholders must have the form {{args.NAME}}`}},
		{"query placeholders closed", func(t *v1alpha1.AnalysisTemplate) { prom(t).Query = "up{job=\"{{args.service\"}" },
			[]string{`spec.metrics[0].provider.prometheus.query: Invalid value: "up{job=\"{{args.service\"}": has {{ without a matching }}`}},
		{"address is an http URL", func(t *v1alpha1.AnalysisTemplate) { prom(t).Address = "prometheus:9090" },
			[]string{`spec.metrics[0].provider.prometheus.address: Invalid value: "prometheus:9090": must be an http or https URL`}},
		{"address has a host", func(t *v1alpha1.AnalysisTemplate) { prom(t).Address = "http:///api" },
			[]string{`spec.metrics[0].provider.prometheus.address: Invalid value: "http:///api": must name a host`}},
		{"a configured provider by name", func(t *v1alpha1.AnalysisTemplate) { prom(t).Address, prom(t).Name = "", "team-a" }, nil},
		{"the default provider", func(t *v1alpha1.AnalysisTemplate) { prom(t).Address = "" }, nil},
		{"provider name and address exclude each other", func(t *v1alpha1.AnalysisTemplate) { prom(t).Name = "team-a" },
			[]string{`spec.metrics[0].provider.prometheus.address: Forbidden: name "team-a" refers to a provider of the operator's configuration`}},
		{"provider name is a DNS label", func(t *v1alpha1.AnalysisTemplate) { prom(t).Address, prom(t).Name = "", "Team_A" },
			[]string{`spec.metrics[0].provider.prometheus.name: Invalid value: "Team_A": must match`}},
		{"a configured provider's credentials stay in the configuration", func(t *v1alpha1.AnalysisTemplate) {
			p := prom(t)
			p.Address, p.Name = "", "team-a"
			p.Auth = &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}}
			p.TLS = &v1alpha1.PrometheusTLS{ServerName: "prometheus"}
			p.Headers = []v1alpha1.HTTPHeader{{Name: "X-Scope-OrgID", Value: "team-b"}}
			p.InsecureSkipVerify = true
		}, []string{
			"spec.metrics[0].provider.prometheus.auth: Forbidden: describes the template's own server and needs address",
			"spec.metrics[0].provider.prometheus.tls: Forbidden",
			"spec.metrics[0].provider.prometheus.headers: Forbidden",
			"spec.metrics[0].provider.prometheus.insecureSkipVerify: Forbidden",
		}},
		{"the default provider's too", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).Address = ""
			prom(t).Auth = &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}}
		}, []string{"spec.metrics[0].provider.prometheus.auth: Forbidden"}},
		{"query timeout positive", func(t *v1alpha1.AnalysisTemplate) { prom(t).Timeout = dur("0s") },
			[]string{`spec.metrics[0].provider.prometheus.timeout: Invalid value: "0s": must be greater than 0`}},
		{"auth needs credentials", func(t *v1alpha1.AnalysisTemplate) { prom(t).Auth = &v1alpha1.PrometheusAuth{} },
			[]string{"spec.metrics[0].provider.prometheus.auth: Required value"}},
		{"auth bearer or basic", func(t *v1alpha1.AnalysisTemplate) {
			ref := &v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}
			prom(t).Auth = &v1alpha1.PrometheusAuth{BearerToken: ref, BasicUsername: ref, BasicPassword: ref}
		}, []string{"spec.metrics[0].provider.prometheus.auth.bearerToken: Forbidden"}},
		{"auth basic needs both", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).Auth = &v1alpha1.PrometheusAuth{BasicUsername: &v1alpha1.SecretKeyRef{Name: "prom", Key: "user"}}
		}, []string{"spec.metrics[0].provider.prometheus.auth.basicPassword: Required value"}},
		{"auth secret name required", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).Auth = &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Key: "token"}}
		}, []string{"spec.metrics[0].provider.prometheus.auth.bearerToken.name: Required value"}},
		{"auth secret key valid", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).Auth = &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Name: "prom", Key: "a/b"}}
		}, []string{`spec.metrics[0].provider.prometheus.auth.bearerToken.key: Invalid value: "a/b"`}},
		{"header name required", func(t *v1alpha1.AnalysisTemplate) { prom(t).Headers = []v1alpha1.HTTPHeader{{Value: "x"}} },
			[]string{"spec.metrics[0].provider.prometheus.headers[0].name: Required value"}},
		{"header name valid", func(t *v1alpha1.AnalysisTemplate) { prom(t).Headers = []v1alpha1.HTTPHeader{{Name: "X Org"}} },
			[]string{`spec.metrics[0].provider.prometheus.headers[0].name: Invalid value: "X Org"`}},
		{"header names unique ignoring case", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).Headers = []v1alpha1.HTTPHeader{{Name: "X-Scope-OrgID", Value: "a"}, {Name: "x-scope-orgid", Value: "b"}}
		}, []string{`spec.metrics[0].provider.prometheus.headers[1].name: Duplicate value: "x-scope-orgid"`}},
		{"tls", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).TLS = &v1alpha1.PrometheusTLS{CA: &v1alpha1.SecretKeyRef{Name: "prom-ca", Key: "ca.crt"}, ServerName: "prometheus"}
		}, nil},
		{"tls cert needs key", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).TLS = &v1alpha1.PrometheusTLS{Cert: &v1alpha1.SecretKeyRef{Name: "client", Key: "tls.crt"}}
		}, []string{"spec.metrics[0].provider.prometheus.tls.key: Required value: cert and key must be set together"}},
		{"tls secret refs checked", func(t *v1alpha1.AnalysisTemplate) {
			prom(t).TLS = &v1alpha1.PrometheusTLS{CA: &v1alpha1.SecretKeyRef{Name: "Bad_Name", Key: "ca.crt"}}
		}, []string{`spec.metrics[0].provider.prometheus.tls.ca.name: Invalid value: "Bad_Name"`}},
		{"compare", compareMetric, nil},
		{"compare by subset", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			prom(t).Query = `sum(rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="{{args.service}}-{{args.subset}}"}[1m]))`
		}, nil},
		{"compare without conditions only", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			metric(t).SuccessCondition, metric(t).FailureCondition = "result[0] < 1", "result[0] > 2"
		}, []string{"spec.metrics[0].successCondition: Forbidden", "spec.metrics[0].failureCondition: Forbidden"}},
		{"compare query must tell the sides apart", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			prom(t).Query = `sum(rate(x{service="{{args.service}}"}[1m]))`
		}, []string{"spec.metrics[0].provider.prometheus.query: Invalid value: \"sum(rate(x{service=\\\"{{args.service}}\\\"}[1m]))\": a compare metric's query must tell"}},
		{"revision only in compare metrics", func(t *v1alpha1.AnalysisTemplate) { prom(t).Query += ` > {{args.revision}}` },
			[]string{`spec.metrics[0].provider.prometheus.query: Invalid value: "{{args.revision}}": argument "revision" is not declared`}},
		{"compare args not declared", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			t.Spec.Args = append(t.Spec.Args, v1alpha1.ArgumentSpec{Name: "subset"})
		}, []string{`spec.args[2].name: Invalid value: "subset": is supplied by Sluice to compare metrics`}},
		{"compare settings", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			metric(t).Compare = &v1alpha1.MetricCompare{Window: dur("1m"), Step: dur("2m"), Confidence: "95%", Direction: "Up"}
		}, []string{
			`spec.metrics[0].compare.step: Invalid value: "2m0s": must not be longer than window`,
			`spec.metrics[0].compare.confidence: Invalid value: "95%": must match ^0\.[0-9]{1,4}$`,
			`spec.metrics[0].compare.direction: Unsupported value: "Up"`,
		}},
		{"compare confidence above 0", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			metric(t).Compare.Confidence = "0.000"
		}, []string{`spec.metrics[0].compare.confidence: Invalid value: "0.000": must be greater than 0`}},
		{"compare durations positive", func(t *v1alpha1.AnalysisTemplate) {
			compareMetric(t)
			metric(t).Compare = &v1alpha1.MetricCompare{Window: dur("0s"), Step: dur("-1s")}
		}, []string{`spec.metrics[0].compare.window: Invalid value: "0s"`, `spec.metrics[0].compare.step: Invalid value: "-1s"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			at := template()
			tc.mutate(at)
			checkErrors(t, ValidateAnalysisTemplate(at), tc.want)
		})
	}
}

// compareMetric turns the template's metric into a compare metric.
func compareMetric(t *v1alpha1.AnalysisTemplate) {
	m := metric(t)
	m.SuccessCondition, m.FailureCondition = "", ""
	m.Compare = &v1alpha1.MetricCompare{Window: dur("10m"), Step: dur("30s"), Confidence: "0.95", Direction: v1alpha1.CompareIncrease}
	prom(t).Query = `histogram_quantile(0.99, sum by (le) (rate(latency_bucket{service="{{args.service}}",version="{{args.revision}}"}[{{args.window}}])))`
}

func TestConditionChecker(t *testing.T) {
	t.Parallel()
	var seen []string
	v := Validator{ConditionChecker: func(expr string) error {
		seen = append(seen, expr)
		if strings.Contains(expr, "<<") {
			return errors.New("syntax error")
		}
		return nil
	}}
	at := template()
	metric(at).FailureCondition = "result[0] << 1"
	checkErrors(t, v.AnalysisTemplate(at), []string{
		`spec.metrics[0].failureCondition: Invalid value: "result[0] << 1": syntax error`,
	})
	if want := []string{"result[0] >= 0.99", "result[0] << 1"}; !slices.Equal(seen, want) {
		t.Errorf("checked %q, want %q", seen, want)
	}
}

// TestPatternsMatchMarkers keeps the Go patterns in step with the
// kubebuilder markers they enforce.
func TestPatternsMatchMarkers(t *testing.T) {
	t.Parallel()
	ours := map[string]bool{}
	for _, re := range []*regexp.Regexp{backendVersionRE, headerNameRE, cookieNameRE, affinityHeaderRE, routeNameRE, argNameRE, metricNameRE, confidenceRE} {
		ours[re.String()] = true
	}
	// Patterns enforced by apimachinery's DNS-1123 label check instead.
	ours[`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`] = true

	files, err := filepath.Glob("../v1alpha1/*_types.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("glob types: %v %v", files, err)
	}
	marker := regexp.MustCompile("\\+kubebuilder:validation:Pattern=`([^`]*)`")
	found := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range marker.FindAllStringSubmatch(string(src), -1) {
			found++
			if !ours[m[1]] {
				t.Errorf("%s: pattern %s has no matching check in this package", f, m[1])
			}
		}
	}
	if found == 0 {
		t.Fatal("no Pattern markers found; did the marker syntax change?")
	}
}
