package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// These tests run the analysis loop (analysis.Advance around the pure
// analysis.Step, with this package's Measurer) against a real Prometheus
// from bin/, scraping a test target whose traffic each test controls. One
// Prometheus and one target serve every test; tests keep apart by service
// name. Intervals are 1 s, like the scrape interval.

var (
	envOnce sync.Once
	shared  *testEnv
	envErr  error
)

type testEnv struct {
	bin    string
	target *promtest.Target
	prom   *promtest.Server
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.prom.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping prometheus:", err)
		}
		_ = shared.target.Close()
	}
	os.Exit(code)
}

func env(t *testing.T) *testEnv {
	t.Helper()
	bin := testbin.Path(t, "prometheus")
	envOnce.Do(func() {
		target, err := promtest.NewTarget()
		if err != nil {
			envErr = err
			return
		}
		prom, err := promtest.Start(bin, target.Addr)
		if err != nil {
			_ = target.Close()
			envErr = err
			return
		}
		shared = &testEnv{bin: bin, target: target, prom: prom}
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return shared
}

const ns = "shop"

func args(service string, extra ...v1alpha1.Argument) []v1alpha1.Argument {
	return append(extra,
		v1alpha1.Argument{Name: "rollout", Value: service},
		v1alpha1.Argument{Name: "namespace", Value: ns},
		v1alpha1.Argument{Name: "service", Value: service},
		v1alpha1.Argument{Name: "host", Value: service + "." + ns + ".svc.cluster.local"},
		v1alpha1.Argument{Name: "stableRevision", Value: "v1"},
		v1alpha1.Argument{Name: "canaryRevision", Value: "v2"},
	)
}

// successRate is the canary's share of non-5xx requests over 5 s, the
// query of examples/analysis/success-rate.yaml with a short window.
const successRate = `(sum(rate(istio_requests_total{reporter="destination",destination_service_name="{{args.service}}",destination_service_namespace="{{args.namespace}}",destination_canonical_revision="{{args.canaryRevision}}",response_code!~"5.."}[5s])) or vector(0))
/ sum(rate(istio_requests_total{reporter="destination",destination_service_name="{{args.service}}",destination_service_namespace="{{args.namespace}}",destination_canonical_revision="{{args.canaryRevision}}"}[5s]))`

func metric(name, query string, count int32) v1alpha1.Metric {
	return v1alpha1.Metric{
		Name:             name,
		Interval:         &metav1.Duration{Duration: time.Second},
		Count:            &count,
		SuccessCondition: "result[0] >= 0.99",
		FailureCondition: "result[0] < 0.90",
		Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
			Query: query, Timeout: &metav1.Duration{Duration: 3 * time.Second},
		}},
	}
}

func newRun(t *testing.T, runArgs []v1alpha1.Argument, metrics ...v1alpha1.Metric) *v1alpha1.AnalysisRun {
	t.Helper()
	tpl := &v1alpha1.AnalysisTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: ns}, Spec: v1alpha1.AnalysisTemplateSpec{Metrics: metrics}}
	run, err := analysis.NewRun(t.Name(), ns, []*v1alpha1.AnalysisTemplate{tpl}, runArgs)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// waitForData polls until query returns a finite value, so that a run
// starts on data rather than on a guess about scrape timing.
func waitForData(t *testing.T, addr, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := promtest.WaitQuery(ctx, addr, query, promtest.HasData); err != nil {
		t.Fatal(err)
	}
}

// at measures with the Prometheus at url as the default provider, the one
// of templates that name none.
func at(url string) *Measurer {
	return New(Options{Providers: []Provider{{Name: DefaultProvider, Address: url}}})
}

// drive runs Advance until the run completes, or until stop says so.
func drive(t *testing.T, run *v1alpha1.AnalysisRun, m analysis.Measurer, stop func() bool) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for !run.Status.Phase.Completed() && (stop == nil || !stop()) {
		out, err := analysis.Advance(context.Background(), run, m, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not complete after 40s: %+v", run.Status)
		}
		time.Sleep(max(out.RequeueAfter, 10*time.Millisecond))
	}
}

func metricResult(t *testing.T, run *v1alpha1.AnalysisRun, name string) v1alpha1.MetricResult {
	t.Helper()
	for _, r := range run.Status.Metrics {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no metric %q in %+v", name, run.Status)
	return v1alpha1.MetricResult{}
}

func dump(run *v1alpha1.AnalysisRun) string {
	b, _ := json.MarshalIndent(run.Status, "", "  ")
	return string(b)
}

// TestHealthyCanaryPasses runs the shipped examples (success rate and p99
// latency, Istio style) on a healthy canary, with 1 s intervals.
func TestHealthyCanaryPasses(t *testing.T) {
	t.Parallel()
	e := env(t)
	e.target.AddWorkload("healthy", ns, "v2", 0, 30)
	res, err := manifest.LoadDir(filepath.Join("..", "..", "examples", "analysis"))
	if err != nil || len(res.Problems) > 0 {
		t.Fatalf("loading examples: %v %v", err, res.Problems)
	}
	var templates []*v1alpha1.AnalysisTemplate
	for _, tpl := range res.AnalysisTemplates() {
		if tpl.Name == "success-rate" || tpl.Name == "latency-p99" {
			templates = append(templates, tpl)
		}
	}
	run, err := analysis.NewRun("healthy", ns, templates, args("healthy", v1alpha1.Argument{Name: "window", Value: "5s"}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range run.Spec.Metrics {
		m := &run.Spec.Metrics[i]
		m.Interval, m.Count = &metav1.Duration{Duration: time.Second}, new(int32(3))
	}
	waitForData(t, e.prom.URL, `sum(rate(istio_request_duration_milliseconds_bucket{destination_service_name="healthy"}[5s])) > 0`)
	drive(t, run, at(e.prom.URL), nil)

	if run.Status.Phase != v1alpha1.AnalysisSuccessful {
		t.Fatalf("phase %s, want Successful:\n%s", run.Status.Phase, dump(run))
	}
	sr, lat := metricResult(t, run, "success-rate"), metricResult(t, run, "latency-p99")
	if sr.Successful != 3 || lat.Successful != 3 || sr.LastValue != "[1]" {
		t.Fatalf("want 3 successful measurements each and a success rate of [1]:\n%s", dump(run))
	}
	// 30 ms requests fall in Istio's (25, 50] bucket: p99 interpolates to
	// 49.75.
	if lat.LastValue != "[49.75]" {
		t.Errorf("p99 latency %s, want [49.75]", lat.LastValue)
	}
}

// TestErrorRateFails: 20% errors against a 90% failure threshold; with
// failureLimit 1 the run fails at the second measurement, not later.
func TestErrorRateFails(t *testing.T) {
	t.Parallel()
	e := env(t)
	e.target.AddWorkload("errors", ns, "v2", 0.2, 30)
	m := metric("success-rate", successRate, 5)
	m.FailureLimit = new(int32(1))
	run := newRun(t, args("errors"), m)
	waitForData(t, e.prom.URL, `sum(rate(istio_requests_total{destination_service_name="errors"}[5s])) > 0`)
	drive(t, run, at(e.prom.URL), nil)

	r := metricResult(t, run, "success-rate")
	if run.Status.Phase != v1alpha1.AnalysisFailed || r.Failed != 2 || len(r.Measurements) != 2 {
		t.Fatalf("want Failed after exactly 2 failed measurements:\n%s", dump(run))
	}
	if !strings.Contains(r.Message, "2 failed measurements, more than failureLimit 1") || !strings.Contains(r.LastValue, "0.8") {
		t.Errorf("message %q, last value %q", r.Message, r.LastValue)
	}
}

// TestFlappingIsInconclusive: the error rate flips between 0% and 10%
// every 200 ms, so the success rate settles around 95%: neither above the
// success threshold nor below the failure threshold.
func TestFlappingIsInconclusive(t *testing.T) {
	t.Parallel()
	e := env(t)
	w := e.target.AddWorkload("flapping", ns, "v2", 0.05, 30)
	w.Flap(200 * time.Millisecond)
	m := metric("success-rate", successRate, 4)
	m.InconclusiveLimit = new(int32(1))
	run := newRun(t, args("flapping"), m)
	waitForData(t, e.prom.URL, `sum(rate(istio_requests_total{destination_service_name="flapping"}[5s])) > 0`)
	drive(t, run, at(e.prom.URL), nil)

	r := metricResult(t, run, "success-rate")
	if run.Status.Phase != v1alpha1.AnalysisInconclusive || r.Inconclusive != 2 || r.Successful+r.Failed+r.Error != 0 {
		t.Fatalf("want Inconclusive after 2 inconclusive measurements:\n%s", dump(run))
	}
	if !strings.Contains(r.Message, "neither successCondition") {
		t.Errorf("message %q", r.Message)
	}
}

// TestPrometheusStopped: Prometheus goes away mid-run; measurements become
// Errors, and past consecutiveErrorLimit the run fails.
func TestPrometheusStopped(t *testing.T) {
	t.Parallel()
	e := env(t)
	prom, err := promtest.Start(e.bin, e.target.Addr) // its own, to stop
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()
	e.target.AddWorkload("stopped", ns, "v2", 0, 30)
	m := metric("success-rate", successRate, 10)
	m.ConsecutiveErrorLimit = new(int32(2))
	run := newRun(t, args("stopped"), m)
	waitForData(t, prom.URL, `sum(rate(istio_requests_total{destination_service_name="stopped"}[5s])) > 0`)
	drive(t, run, at(prom.URL), func() bool { return run.Status.Metrics != nil && run.Status.Metrics[0].Successful >= 1 })
	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	drive(t, run, at(prom.URL), nil)

	r := metricResult(t, run, "success-rate")
	if run.Status.Phase != v1alpha1.AnalysisFailed || r.Phase != v1alpha1.AnalysisError || r.Error != 3 || r.ConsecutiveErrors != 3 || r.Successful < 1 {
		t.Fatalf("want Failed after 3 errors in a row:\n%s", dump(run))
	}
	if !strings.Contains(r.Message, "3 errors in a row, more than consecutiveErrorLimit 2") || !strings.Contains(r.Message, "connection refused") {
		t.Errorf("message %q", r.Message)
	}
}

// TestQuerySyntaxError: Prometheus rejects the query; the measurement is
// an Error carrying Prometheus' own message.
func TestQuerySyntaxError(t *testing.T) {
	t.Parallel()
	e := env(t)
	m := metric("broken", `sum(rate(istio_requests_total{destination_service_name="{{args.service}}"}[5s])) /`, 3)
	m.ConsecutiveErrorLimit = new(int32(0))
	run := newRun(t, args("broken"), m)
	drive(t, run, at(e.prom.URL), nil)

	r := metricResult(t, run, "broken")
	if run.Status.Phase != v1alpha1.AnalysisFailed || r.Error != 1 {
		t.Fatalf("want Failed after one Error:\n%s", dump(run))
	}
	if msg := r.Measurements[0].Message; !strings.Contains(msg, "bad_data") || !strings.Contains(msg, "parse error") {
		t.Errorf("message %q, want Prometheus' parse error", msg)
	}
}

// TestEmptyVectorIsInconclusive: a service without traffic gives no data,
// which is never success.
func TestEmptyVectorIsInconclusive(t *testing.T) {
	t.Parallel()
	e := env(t)
	m := metric("success-rate", successRate, 3)
	run := newRun(t, args("nobody"), m)
	drive(t, run, at(e.prom.URL), nil)

	r := metricResult(t, run, "success-rate")
	if run.Status.Phase != v1alpha1.AnalysisInconclusive || r.Inconclusive != 1 || !strings.Contains(r.Message, "no data") {
		t.Fatalf("want Inconclusive for no data:\n%s", dump(run))
	}
}

// TestInjection passes `"} or vector(1) #` as an argument. Substituted
// as is, it turns the label matcher into `... or vector(1)` and the query
// always returns 1, which the test shows first; escaped, it is just a
// service name nobody has.
func TestInjection(t *testing.T) {
	t.Parallel()
	e := env(t)
	const evil = `"} or vector(1) #`
	query := `istio_requests_total{reporter="destination",destination_service_name="{{args.svc}}",response_code="500"}`

	naive := strings.ReplaceAll(query, "{{args.svc}}", evil)
	c, err := api.NewClient(api.Config{Address: e.prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := v1.NewAPI(c).Query(context.Background(), naive, time.Now())
	if vec, ok := v.(model.Vector); err != nil || !ok || len(vec) != 1 || vec[0].Value != 1 {
		t.Fatalf("unescaped, the injection should return vector(1); got %v, %v", v, err)
	}

	m := metric("injected", query, 2)
	m.SuccessCondition, m.FailureCondition = "all(result, x, x >= 0)", ""
	tpl := &v1alpha1.AnalysisTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: ns}, Spec: v1alpha1.AnalysisTemplateSpec{
		Args: []v1alpha1.ArgumentSpec{{Name: "svc"}}, Metrics: []v1alpha1.Metric{m},
	}}
	run, err := analysis.NewRun("injection", ns, []*v1alpha1.AnalysisTemplate{tpl}, args("injection", v1alpha1.Argument{Name: "svc", Value: evil}))
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	rec := measurerFunc(func(ctx context.Context, q analysis.Query) analysis.Result {
		sent = append(sent, q.Query)
		return at(e.prom.URL).Measure(ctx, q)
	})
	drive(t, run, rec, nil)

	r := metricResult(t, run, "injected")
	if run.Status.Phase != v1alpha1.AnalysisInconclusive || r.Inconclusive != 1 || r.Error != 0 {
		t.Fatalf("want Inconclusive (no such service, and a query Prometheus accepts):\n%s", dump(run))
	}
	want := `istio_requests_total{reporter="destination",destination_service_name="\"} or vector(1) #",response_code="500"}`
	if len(sent) != 1 || sent[0] != want {
		t.Fatalf("sent %q, want %q", sent, want)
	}
}

type measurerFunc func(context.Context, analysis.Query) analysis.Result

func (f measurerFunc) Measure(ctx context.Context, q analysis.Query) analysis.Result {
	return f(ctx, q)
}

// TestResumeAfterRestart takes two measurements, "restarts" (the status
// goes through JSON into a new run object and a new Measurer), stays down
// past a measurement's slot, and continues: every measurement is taken
// exactly once, each for its own slot.
func TestResumeAfterRestart(t *testing.T) {
	t.Parallel()
	e := env(t)
	e.target.AddWorkload("restart", ns, "v2", 0, 30)
	m := metric("success-rate", successRate, 5)
	run := newRun(t, args("restart"), m)
	waitForData(t, e.prom.URL, `sum(rate(istio_requests_total{destination_service_name="restart"}[5s])) > 0`)
	drive(t, run, at(e.prom.URL), func() bool { return run.Status.Metrics != nil && run.Status.Metrics[0].Successful >= 2 })

	data, err := json.Marshal(run)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // down past the next slot
	var resumed v1alpha1.AnalysisRun
	if err := json.Unmarshal(data, &resumed); err != nil {
		t.Fatal(err)
	}
	drive(t, &resumed, at(e.prom.URL), nil)

	r := metricResult(t, &resumed, "success-rate")
	if resumed.Status.Phase != v1alpha1.AnalysisSuccessful || r.Successful != 5 || len(r.Measurements) != 5 {
		t.Fatalf("want 5 successful measurements:\n%s", dump(&resumed))
	}
	start := resumed.Status.StartedAt.Time
	for k, meas := range r.Measurements {
		if meas.Index != int32(k) || !meas.At.Time.Equal(start.Add(time.Duration(k)*time.Second)) {
			t.Errorf("measurement %d: index %d at %s, want index %d at %s", k, meas.Index, meas.At.Time, k, start.Add(time.Duration(k)*time.Second))
		}
	}
}

// TestCompare judges a canary against the stable revision with the
// Mann-Whitney U test: 30% errors against none fails; none against none
// passes.
func TestCompare(t *testing.T) {
	t.Parallel()
	e := env(t)
	e.target.AddWorkload("compare-bad", ns, "v1", 0, 30)
	e.target.AddWorkload("compare-bad", ns, "v2", 0.3, 30)
	e.target.AddWorkload("compare-same", ns, "v1", 0, 30)
	e.target.AddWorkload("compare-same", ns, "v2", 0, 30)
	const errorRatio = `(sum(rate(istio_requests_total{destination_service_name="{{args.service}}",destination_canonical_revision="{{args.revision}}",response_code=~"5.."}[2s])) or vector(0))
/ sum(rate(istio_requests_total{destination_service_name="{{args.service}}",destination_canonical_revision="{{args.revision}}"}[2s]))`
	cmp := func() v1alpha1.Metric {
		m := metric("error-ratio", errorRatio, 1)
		m.SuccessCondition, m.FailureCondition = "", ""
		m.Compare = &v1alpha1.MetricCompare{Window: &metav1.Duration{Duration: 6 * time.Second}, Step: &metav1.Duration{Duration: time.Second}}
		return m
	}
	// Wait until the window holds enough samples on both sides.
	for _, svc := range []string{"compare-bad", "compare-same"} {
		waitForData(t, e.prom.URL, fmt.Sprintf(`count_over_time((sum(rate(istio_requests_total{destination_service_name=%q,destination_canonical_revision="v1"}[2s])) > -1)[6s:1s]) >= 6`, svc))
	}
	cases := []struct {
		service string
		phase   v1alpha1.AnalysisPhase
		msg     string
	}{
		{"compare-bad", v1alpha1.AnalysisFailed, "canary is significantly higher than stable"},
		{"compare-same", v1alpha1.AnalysisSuccessful, ""},
	}
	for _, tc := range cases {
		t.Run(tc.service, func(t *testing.T) {
			run := newRun(t, args(tc.service), cmp())
			drive(t, run, at(e.prom.URL), nil)
			r := metricResult(t, run, "error-ratio")
			if run.Status.Phase != tc.phase || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("want %s (%q):\n%s", tc.phase, tc.msg, dump(run))
			}
		})
	}
}
