package analysisrun

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestOutcomes runs one AnalysisRun per case through the controller, end
// to end: the run's final status, the measurements Prometheus saw, the
// Events and the metrics.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	refused, err := promtest.FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(m *v1alpha1.Metric, _ string) {
		m.Provider.Prometheus.Auth = &v1alpha1.PrometheusAuth{BearerToken: &v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}}
		m.ConsecutiveErrorLimit = new(int32(0))
	}
	cases := []struct {
		name string
		// errorRate of the canary's traffic; negative: no traffic (the
		// case never reaches Prometheus).
		errorRate float64
		metric    func(m *v1alpha1.Metric, ns string)
		// own: the metric queries the proxy as an address of its own,
		// which the options allow, instead of the default provider.
		own    bool
		secret map[string]string // data of Secret "prom", if any
		opts   func(t *testing.T, o *Options)
		// counts: Successful, Failed, Inconclusive, Error measurements.
		wantRun, wantMetric v1alpha1.AnalysisPhase
		wantCounts          [4]int32
		wantMessage         []string // in the metric's message; {ns} is the namespace
		wantEvents          []string
		wantAuth            string
	}{{
		name:      "a healthy canary is Successful after count measurements",
		errorRate: 0,
		metric:    func(m *v1alpha1.Metric, _ string) { m.Count = new(int32(3)) },
		wantRun:   v1alpha1.AnalysisSuccessful, wantMetric: v1alpha1.AnalysisSuccessful,
		wantCounts: [4]int32{3, 0, 0, 0},
		wantEvents: []string{"Normal MetricSuccessful", "Normal RunSuccessful"},
	}, {
		name:      "a failing canary is Failed after failureLimit+1 failed measurements",
		errorRate: 0.3,
		metric:    func(m *v1alpha1.Metric, _ string) { m.FailureLimit = new(int32(1)) },
		wantRun:   v1alpha1.AnalysisFailed, wantMetric: v1alpha1.AnalysisFailed,
		wantCounts:  [4]int32{0, 2, 0, 0},
		wantMessage: []string{"2 failed measurements, more than failureLimit 1; last: value [0.", "failureCondition `result[0] < 0.90` is true"},
		wantEvents:  []string{"Warning MetricFailed", "Warning RunFailed"},
	}, {
		name:      "a Prometheus that refuses connections gives Errors up to consecutiveErrorLimit",
		errorRate: -1,
		metric:    func(m *v1alpha1.Metric, _ string) { m.ConsecutiveErrorLimit = new(int32(2)) },
		opts: func(_ *testing.T, o *Options) {
			o.Prometheus.Providers = []prometheus.Provider{{Name: prometheus.DefaultProvider, Address: "http://" + refused}}
		},
		wantRun: v1alpha1.AnalysisFailed, wantMetric: v1alpha1.AnalysisError,
		wantCounts:  [4]int32{0, 0, 0, 3},
		wantMessage: []string{"3 errors in a row, more than consecutiveErrorLimit 2; last: query failed: ", refused, "connection refused"},
		wantEvents:  []string{"Warning MetricError", "Warning RunFailed"},
	}, {
		name:      "a missing Secret is an Error naming it",
		errorRate: -1,
		own:       true,
		metric:    bearer,
		wantRun:   v1alpha1.AnalysisFailed, wantMetric: v1alpha1.AnalysisError,
		wantCounts:  [4]int32{0, 0, 0, 1},
		wantMessage: []string{"bearer token from Secret {ns}/prom key token: not found"},
		wantEvents:  []string{"Warning MetricError", "Warning RunFailed"},
	}, {
		name:      "a missing key is an Error naming the Secret's keys",
		errorRate: -1,
		own:       true,
		metric:    bearer,
		secret:    map[string]string{"user": "u", "password": "p"},
		wantRun:   v1alpha1.AnalysisFailed, wantMetric: v1alpha1.AnalysisError,
		wantCounts:  [4]int32{0, 0, 0, 1},
		wantMessage: []string{"bearer token from Secret {ns}/prom key token: no such key; the Secret has password, user"},
		wantEvents:  []string{"Warning MetricError", "Warning RunFailed"},
	}, {
		name:      "a bearer token from a Secret is sent",
		errorRate: 0,
		own:       true,
		metric: func(m *v1alpha1.Metric, ns string) {
			bearer(m, ns)
			m.Count = new(int32(1))
		},
		secret:  map[string]string{"token": "s3cret"},
		wantRun: v1alpha1.AnalysisSuccessful, wantMetric: v1alpha1.AnalysisSuccessful,
		wantCounts: [4]int32{1, 0, 0, 0},
		wantEvents: []string{"Normal MetricSuccessful", "Normal RunSuccessful"},
		wantAuth:   "Bearer s3cret",
	}, {
		name:      "MaxMeasurementTimeout caps the template's timeout",
		errorRate: -1,
		metric: func(m *v1alpha1.Metric, _ string) {
			m.Provider.Prometheus.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
			m.ConsecutiveErrorLimit = new(int32(0))
		},
		opts: func(t *testing.T, o *Options) {
			o.Prometheus.Providers = []prometheus.Provider{{Name: prometheus.DefaultProvider, Address: hangingServer(t)}}
			o.MaxMeasurementTimeout = time.Second
		},
		wantRun: v1alpha1.AnalysisFailed, wantMetric: v1alpha1.AnalysisError,
		wantCounts:  [4]int32{0, 0, 0, 1},
		wantMessage: []string{"query timed out after 1s"},
		wantEvents:  []string{"Warning MetricError", "Warning RunFailed"},
	}}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := cluster(t)
			ns := newNamespace(t, c)
			service := fmt.Sprintf("outcome%d", i)
			proxy := newProxy(t, prometheusURL(t))
			opts := defaultAt(proxy.URL)
			if tc.opts != nil {
				tc.opts(t, &opts)
			}
			if tc.errorRate >= 0 {
				serve(t, service, tc.errorRate)
			}
			if tc.secret != nil {
				createSecret(t, c, ns, "prom", tc.secret)
			}
			m := successMetric(5)
			tc.metric(&m, ns)
			if tc.own {
				m.Provider.Prometheus.Address = proxy.URL
				opts.Prometheus.AllowTemplateAddresses = true
			}
			startManager(t, ns, opts)
			key := createRun(t, c, ns, service, m)

			run := waitRun(t, c, key, "the run completes", completed)
			r := metricResult(t, run, m.Name)
			counts := [4]int32{r.Successful, r.Failed, r.Inconclusive, r.Error}
			if run.Status.Phase != tc.wantRun || r.Phase != tc.wantMetric || counts != tc.wantCounts {
				t.Fatalf("want run %s, metric %s, counts %v; got:\n%s", tc.wantRun, tc.wantMetric, tc.wantCounts, dump(run))
			}
			for _, w := range tc.wantMessage {
				if want := strings.ReplaceAll(w, "{ns}", ns); !strings.Contains(r.Message, want) {
					t.Errorf("metric message %q does not contain %q", r.Message, want)
				}
			}
			checkHistory(t, run, r, time.Second)
			if tc.errorRate >= 0 {
				// Each measurement queried Prometheus once, for its own slot.
				if distinct, total := proxy.queries(); distinct != int(taken(r)) || total != distinct {
					t.Errorf("Prometheus saw %d queries for %d slots; want one per measurement (%d)", total, distinct, taken(r))
				}
			}
			if tc.wantAuth != "" && !proxy.sawAuthorization(tc.wantAuth) {
				t.Errorf("no query came with Authorization %q", tc.wantAuth)
			}
			waitEvents(t, c, key, tc.wantEvents)
			poll.Until(t, "measurements counted in sluice_analysis_measurements_total", func() bool {
				for i, outcome := range []v1alpha1.AnalysisPhase{v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisFailed, v1alpha1.AnalysisInconclusive, v1alpha1.AnalysisError} {
					if testutil.ToFloat64(analysisSeries.Measurements.WithLabelValues(ns, m.Name, string(outcome))) != float64(tc.wantCounts[i]) {
						return false
					}
				}
				return true
			})
		})
	}
}

// TestTerminateCompletesEarly: spec.terminate, as the Rollout reconciler
// sets it when a step ends, stops a run without a count; it completes
// with what it measured.
func TestTerminateCompletesEarly(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := newNamespace(t, c)
	serve(t, "terminated", 0)
	proxy := newProxy(t, prometheusURL(t))
	startManager(t, ns, defaultAt(proxy.URL))
	key := createRun(t, c, ns, "terminated", successMetric(0))
	waitRun(t, c, key, "two successful measurements", func(run *v1alpha1.AnalysisRun) bool {
		return len(run.Status.Metrics) == 1 && run.Status.Metrics[0].Successful >= 2
	})

	run := getRun(t, c, key)
	patched := run.DeepCopy()
	patched.Spec.Terminate = true
	if err := c.Patch(context.Background(), patched, client.MergeFrom(run)); err != nil {
		t.Fatal(err)
	}
	run = waitRun(t, c, key, "the run completes", completed)
	r := metricResult(t, run, "success-rate")
	if run.Status.Phase != v1alpha1.AnalysisSuccessful || r.Phase != v1alpha1.AnalysisSuccessful || r.Successful < 2 || r.Failed+r.Error+r.Inconclusive != 0 {
		t.Fatalf("want Successful after at least 2 successful measurements:\n%s", dump(run))
	}
	if want := fmt.Sprintf("stopped after %d measurements", taken(r)); r.Message != want {
		t.Errorf("metric message %q, want %q", r.Message, want)
	}
	checkHistory(t, run, r, time.Second)
	waitEvents(t, c, key, []string{"Normal MetricSuccessful", "Normal RunSuccessful"})
}

// TestRestartResumesWithoutRepeating stops the manager mid-run and starts
// a new one a couple of intervals later: the new process continues from
// the status, takes the missed measurements for their own slots, and
// takes none twice.
func TestRestartResumesWithoutRepeating(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := newNamespace(t, c)
	serve(t, "restarted", 0)
	proxy := newProxy(t, prometheusURL(t))
	opts := defaultAt(proxy.URL)
	stop := startManager(t, ns, opts)
	const count = 8
	key := createRun(t, c, ns, "restarted", successMetric(count))
	before := waitRun(t, c, key, "two measurements", func(run *v1alpha1.AnalysisRun) bool {
		return len(run.Status.Metrics) == 1 && taken(run.Status.Metrics[0]) >= 2
	})
	stop()
	stopped := getRun(t, c, key)
	if completed(stopped) {
		t.Fatalf("the run completed before the restart; the test needs a longer run:\n%s", dump(stopped))
	}
	// Downtime of a few intervals: the new manager has slots to catch up.
	time.Sleep(2 * time.Second)

	startManager(t, ns, opts)
	run := waitRun(t, c, key, "the run completes", completed)
	r := metricResult(t, run, "success-rate")
	if run.Status.Phase != v1alpha1.AnalysisSuccessful || r.Successful != count || taken(r) != count {
		t.Fatalf("want Successful after exactly %d measurements:\n%s", count, dump(run))
	}
	if !run.Status.StartedAt.Equal(before.Status.StartedAt) {
		t.Errorf("startedAt moved from %s to %s", before.Status.StartedAt, run.Status.StartedAt)
	}
	checkHistory(t, run, r, time.Second)
	// One query per slot; at most one more, for a measurement the stop cut
	// short (dropped, not recorded, and taken again by the new manager).
	if distinct, total := proxy.queries(); distinct != count || total > count+1 {
		t.Errorf("Prometheus saw %d queries for %d slots; want %d slots, each queried once (one may repeat after the stop)", total, distinct, count)
	}
}

// TestSlowPrometheusHoldsOneWorker: a run whose Prometheus hangs holds one
// worker; another run measures meanwhile. Stopping the manager drops the
// hanging measurement instead of recording it as an Error.
func TestSlowPrometheusHoldsOneWorker(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := newNamespace(t, c)
	serve(t, "unblocked", 0)
	opts := defaultAt(prometheusURL(t))
	opts.Prometheus.AllowTemplateAddresses = true
	opts.MaxConcurrentReconciles = 2
	// Longer than the test: the hang must last while the other run
	// measures.
	opts.MaxMeasurementTimeout = 10 * time.Minute
	stop := startManager(t, ns, opts)
	slow := successMetric(1)
	slow.Provider.Prometheus.Address = hangingServer(t)
	slow.Provider.Prometheus.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
	hanging := createRun(t, c, ns, "hanging", slow)
	waitRun(t, c, hanging, "the hanging run started", func(run *v1alpha1.AnalysisRun) bool { return run.Status.StartedAt != nil })

	other := createRun(t, c, ns, "unblocked", successMetric(2))
	waitRun(t, c, other, "the other run is Successful", func(run *v1alpha1.AnalysisRun) bool {
		return run.Status.Phase == v1alpha1.AnalysisSuccessful
	})
	stop()
	run := getRun(t, c, hanging)
	if run.Status.Phase != v1alpha1.AnalysisRunning || taken(metricResult(t, run, "success-rate")) != 0 {
		t.Fatalf("want the hanging run Running with no measurement recorded:\n%s", dump(run))
	}
}

func createSecret(t *testing.T, c client.Client, ns, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := c.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// waitEvents waits until the run's Events are want ("Type Reason"), in
// any order, and fails if there are others.
func waitEvents(t *testing.T, c client.Client, key types.NamespacedName, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var got []string
	poll.Until(t, fmt.Sprintf("Events %v", want), func() bool {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace(key.Namespace)); err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, e := range list.Items {
			if e.Regarding.Name == key.Name && e.Regarding.Kind == "AnalysisRun" {
				got = append(got, e.Type+" "+e.Reason)
			}
		}
		slices.Sort(got)
		return len(got) >= len(want)
	})
	if !slices.Equal(got, want) {
		t.Errorf("Events %v, want %v", got, want)
	}
}
