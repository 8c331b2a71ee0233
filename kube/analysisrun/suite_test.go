package analysisrun

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The tests run the controller in a real manager against a real API server
// (envtest: kube-apiserver and etcd from bin/) and a real Prometheus from
// bin/, which scrapes a test target on 127.0.0.1 whose Istio-style request
// metrics each test drives. One API server and one Prometheus serve every
// test; each test has a namespace of its own, a manager whose cache sees
// only that namespace, and a proxy in front of Prometheus that counts the
// queries it forwards.

var env = kubetest.NewEnv()

var (
	promOnce sync.Once
	prom     *promtest.Server
	target   *promtest.Target
	promErr  error
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	code := env.Run(m)
	if prom != nil {
		if err := prom.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping prometheus:", err)
			code = max(code, 1)
		}
		_ = target.Close()
	}
	os.Exit(code)
}

// cluster returns a client of the shared API server (no cache: what a test
// reads is what the API server holds).
func cluster(t *testing.T) client.WithWatch { return env.Client(t) }

func newNamespace(t *testing.T, c client.Client) string {
	return kubetest.Namespace(t, c, "sluice-analysis-")
}

// prometheusURL starts the shared Prometheus and its target on first use.
func prometheusURL(t *testing.T) string {
	t.Helper()
	bin := testbin.Path(t, "prometheus")
	promOnce.Do(func() {
		if target, promErr = promtest.NewTarget(); promErr != nil {
			return
		}
		if prom, promErr = promtest.Start(bin, target.Addr); promErr != nil {
			_ = target.Close()
		}
	})
	if promErr != nil {
		t.Fatal(promErr)
	}
	return prom.URL
}

// serve makes the target report traffic of the canary revision "v2" of
// service, errorRate of it failing, and waits until Prometheus has it.
func serve(t *testing.T, service string, errorRate float64) {
	t.Helper()
	url := prometheusURL(t)
	target.AddWorkload(service, "shop", "v2", errorRate, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := fmt.Sprintf(`sum(rate(istio_requests_total{destination_service_name=%q}[5s])) > 0`, service)
	if err := promtest.WaitQuery(ctx, url, q, promtest.HasData); err != nil {
		t.Fatal(err)
	}
}

// startManager runs the analysis controller in a manager whose cache sees
// ns only, as `sluice controller` would (leader election aside: one
// manager per namespace at a time here), and returns a function that
// stops it and waits until it has.
func startManager(t *testing.T, ns string, opts Options) (stop func()) {
	t.Helper()
	cfg, scheme := env.Start(t)
	return kubetest.RunManager(t, cfg, manager.Options{
		Scheme: scheme,
		Cache:  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	}, func(_ context.Context, mgr manager.Manager) error { return Setup(mgr, opts) })
}

// successRate is the canary's share of non-5xx requests over 5 s.
const successRate = `(sum(rate(istio_requests_total{destination_service_name="{{args.service}}",destination_canonical_revision="{{args.canaryRevision}}",response_code!~"5.."}[5s])) or vector(0))
/ sum(rate(istio_requests_total{destination_service_name="{{args.service}}",destination_canonical_revision="{{args.canaryRevision}}"}[5s]))`

// successMetric measures successRate every second; count 0 means until
// the run is stopped.
func successMetric(count int32) v1alpha1.Metric {
	m := v1alpha1.Metric{
		Name:             "success-rate",
		Interval:         &metav1.Duration{Duration: time.Second},
		SuccessCondition: "result[0] >= 0.99",
		FailureCondition: "result[0] < 0.90",
		Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
			Query: successRate, Timeout: &metav1.Duration{Duration: 5 * time.Second},
		}},
	}
	if count > 0 {
		m.Count = &count
	}
	return m
}

// createRun creates the run the Rollout reconciler would for service's
// canary: analysis.NewRun from a template of metrics.
func createRun(t *testing.T, c client.Client, ns, service string, metrics ...v1alpha1.Metric) types.NamespacedName {
	t.Helper()
	tpl := &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gate"},
		Spec:       v1alpha1.AnalysisTemplateSpec{Metrics: metrics},
	}
	args := []v1alpha1.Argument{{Name: "service", Value: service}, {Name: "canaryRevision", Value: "v2"}}
	run, err := analysis.NewRun(service+"-v2-1-step1", ns, []*v1alpha1.AnalysisTemplate{tpl}, args)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKeyFromObject(run)
}

func getRun(t *testing.T, c client.Client, key types.NamespacedName) *v1alpha1.AnalysisRun {
	t.Helper()
	run := &v1alpha1.AnalysisRun{}
	if err := c.Get(context.Background(), key, run); err != nil {
		t.Fatal(err)
	}
	return run
}

// waitRun polls the run until cond holds, and returns it.
func waitRun(t *testing.T, c client.Client, key types.NamespacedName, what string, cond func(*v1alpha1.AnalysisRun) bool) *v1alpha1.AnalysisRun {
	t.Helper()
	var run *v1alpha1.AnalysisRun
	if !poll.Holds(60*time.Second, 50*time.Millisecond, func() bool { run = getRun(t, c, key); return cond(run) }) {
		t.Fatalf("timed out waiting until %s; status:\n%s", what, dump(run))
	}
	return run
}

func completed(run *v1alpha1.AnalysisRun) bool { return run.Status.Phase.Completed() }

func metricResult(t *testing.T, run *v1alpha1.AnalysisRun, name string) v1alpha1.MetricResult {
	t.Helper()
	for _, r := range run.Status.Metrics {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no metric %q in status:\n%s", name, dump(run))
	return v1alpha1.MetricResult{}
}

func taken(r v1alpha1.MetricResult) int32 { return r.Successful + r.Failed + r.Inconclusive + r.Error }

// checkHistory asserts that the recorded measurements are one per slot,
// in order, with none missing: index k at startedAt + k × interval.
func checkHistory(t *testing.T, run *v1alpha1.AnalysisRun, r v1alpha1.MetricResult, interval time.Duration) {
	t.Helper()
	first := taken(r) - int32(len(r.Measurements))
	for i, m := range r.Measurements {
		want := run.Status.StartedAt.Add(time.Duration(first+int32(i)) * interval)
		if m.Index != first+int32(i) || !m.At.Time.Equal(want) {
			t.Fatalf("measurement %d is index %d at %s, want index %d at %s:\n%s", i, m.Index, m.At.Time, first+int32(i), want, dump(run))
		}
	}
}

func dump(run *v1alpha1.AnalysisRun) string {
	s := fmt.Sprintf("phase %s: %s (started %v)\n", run.Status.Phase, run.Status.Message, run.Status.StartedAt)
	for _, r := range run.Status.Metrics {
		s += fmt.Sprintf("  %s %s ok=%d failed=%d inconclusive=%d error=%d: %s\n", r.Name, r.Phase, r.Successful, r.Failed, r.Inconclusive, r.Error, r.Message)
		for _, m := range r.Measurements {
			s += fmt.Sprintf("    #%d %s at %s value %s %s\n", m.Index, m.Phase, m.At.Format(time.RFC3339), m.Value, m.Message)
		}
	}
	return s
}

// defaultAt configures the Prometheus at url as the provider named
// default, the one of templates that name none.
func defaultAt(url string) Options {
	return Options{Prometheus: prometheus.Options{Providers: []prometheus.Provider{{Name: prometheus.DefaultProvider, Address: url}}}}
}
