package rolloutmetrics

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestParseValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.99", 0.99, true},
		{"1e+06", 1e6, true},
		{"[0.993, 0.987]", 0.993, true},
		{"[12]", 12, true},
		{"[0.5, … 3 more]", 0.5, true},
		{"canary 0.12 vs stable 0.1 (medians of 10 and 9 samples), p=0.3", 0.12, true},
		{"+Inf", math.Inf(1), true},
		{"[]", 0, false},
		{"", 0, false},
		{"canary NaN vs stable 1 (medians of 0 and 3 samples)", math.NaN(), true},
	}
	for _, tc := range cases {
		got, ok := ParseValue(tc.in)
		same := got == tc.want || math.IsNaN(got) && math.IsNaN(tc.want)
		if ok != tc.ok || (ok && !same) {
			t.Errorf("ParseValue(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

var valueSeries = []string{"sluice_analysis_metric_value", "sluice_analysis_metric_threshold"}

// run is an AnalysisRun of one threshold metric with the given
// measurements, taken a minute apart from t0.
func run(name string, t0 time.Time, values ...string) *v1alpha1.AnalysisRun {
	r := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: name}}
	r.Spec.Metrics = []v1alpha1.Metric{{Name: "success-rate", SuccessCondition: "result[0] >= 0.95", FailureCondition: "result[0] < 0.9 || isNaN(result[0])"}}
	res := v1alpha1.MetricResult{Name: "success-rate", Phase: v1alpha1.AnalysisRunning}
	for i, v := range values {
		res.Measurements = append(res.Measurements, v1alpha1.Measurement{Index: int32(i), Value: v, At: metav1.NewTime(t0.Add(time.Duration(i) * time.Minute))})
	}
	r.Status.Metrics = []v1alpha1.MetricResult{res}
	return r
}

// The value series follows the latest measurement with a number among a
// Rollout's runs, whatever order the runs are observed in; it carries
// the conditions' thresholds; Drop removes only what the dropped run
// shows; Forget removes the Rollout's series; outside names are bounded.
func TestAnalysisSeries(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAnalysis()
	reg := prometheus.NewRegistry()
	if err := a.Register(reg); err != nil {
		t.Fatal(err)
	}
	value := func() float64 { return testutil.ToFloat64(a.Value.WithLabelValues("shop", "reviews", "success-rate")) }

	a.Observe("shop", "reviews", run("bg", t0, "0.97", "[0.96, 0.5]"))
	if v := value(); v != 0.96 {
		t.Errorf("value %v, want 0.96 (the latest measurement's first series)", v)
	}
	for cond, want := range map[string]float64{ConditionSuccess: 0.95, ConditionFailure: 0.9} {
		if v := testutil.ToFloat64(a.Threshold.WithLabelValues("shop", "reviews", "success-rate", cond)); v != want {
			t.Errorf("%s threshold %v, want %v", cond, v, want)
		}
	}
	// A step run measured later; then the background run again, but its
	// latest measurement is older than the step run's.
	a.Observe("shop", "reviews", run("step2", t0.Add(5*time.Minute), "0.93"))
	a.Observe("shop", "reviews", run("bg", t0, "0.97", "[0.96, 0.5]", "")) // an error: no number
	if v := value(); v != 0.93 {
		t.Errorf("value %v, want the step run's 0.93", v)
	}
	a.Drop("shop", "reviews", "bg")
	if v := value(); v != 0.93 {
		t.Errorf("value %v after dropping the background run, want 0.93 still", v)
	}
	a.Drop("shop", "reviews", "step2")
	if n := testutil.CollectAndCount(reg, valueSeries...); n != 0 {
		t.Errorf("%d series left after the run they show was dropped", n)
	}

	long := strings.Repeat("r", 300)
	a.Observe("shop", long, run("x", t0, "1"))
	a.Observe("shop", "other", run("y", t0, "[]")) // no data: no series
	if n := testutil.CollectAndCount(reg, "sluice_analysis_metric_value"); n != 1 {
		t.Errorf("%d value series, want 1", n)
	}
	if n := testutil.CollectAndCount(reg, "sluice_analysis_measurement_duration_seconds"); n != 2 {
		t.Errorf("%d measurement duration series, want ok and error from the start", n)
	}
	if v := testutil.ToFloat64(a.Value.WithLabelValues("shop", Label(long), "success-rate")); v != 1 {
		t.Errorf("value under the bounded rollout label = %v, want 1", v)
	}
	if got := Label(long); len(got) > MaxLabel {
		t.Errorf("label of %d bytes, want at most %d", len(got), MaxLabel)
	}
	if got := a.Runs("shop", long); len(got) != 1 || got[0] != "x" {
		t.Errorf("Runs = %v, want [x]", got)
	}
	a.Forget("shop", long)
	a.Forget("shop", "other")
	if n := testutil.CollectAndCount(reg, valueSeries...); n != 0 {
		t.Errorf("%d series left after Forget", n)
	}
}

// BenchmarkObserve is the cost the runner and the analysis controller add
// per persisted run state: a run of three metrics with a full measurement
// history, observed again after one more measurement (thresholds cached).
//
//	go test -run '^$' -bench Observe ./internal/rolloutmetrics/
func BenchmarkObserve(b *testing.B) {
	a := NewAnalysis()
	if err := a.Register(prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	values := make([]string, 32)
	for i := range values {
		values[i] = "[0.99" + strings.Repeat("1", i%5) + ", 0.5]"
	}
	r := run("bench", t0, values...)
	for _, name := range []string{"latency-p99", "error-rate"} {
		m := r.Spec.Metrics[0]
		m.Name = name
		r.Spec.Metrics = append(r.Spec.Metrics, m)
		res := r.Status.Metrics[0]
		res.Name = name
		r.Status.Metrics = append(r.Status.Metrics, res)
	}
	b.ReportAllocs()
	for b.Loop() {
		a.Observe("shop", "reviews", r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/3, "ns/metric")
}
