package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	promanalysis "github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// gatedCanary is reviews' spec: an analysis step whose one metric reads
// value from a real Prometheus, then a pause for a person. Without
// analysis: only the pause.
func gatedCanary(value string) string {
	if value == "" {
		return `  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
`
	}
	return fmt.Sprintf(`  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis:
          templates: [{name: ratio}]
      - pause: {}
---
apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: ratio
spec:
  metrics:
  - name: ratio
    interval: 1s
    count: 2
    successCondition: result[0] >= 0.5
    provider:
      prometheus:
        query: vector(%s)
`, value)
}

// TestAnalysisMetricValues runs a real analysis (the AnalysisDriver
// against a real Prometheus) and reads the runner's registry: the value
// series is the measured value, as the run's status records it, beside
// the success condition's threshold; it stays once the run completed and
// goes when the next rollout begins; measurements are counted and timed,
// and each step is timed in sluice_rollout_reconcile_duration_seconds:
// the controller's series.
func TestAnalysisMetricValues(t *testing.T) {
	t.Parallel()
	prom, err := promtest.Start(testbin.Path(t, "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	reg := prometheus.NewRegistry()
	f := newFixture(t)
	f.pushManifest(reviewsRollout("v1", "127.0.0.1:9001", gatedCanary("0.875")), "v1")
	ctx, cancel := context.WithCancel(context.Background())
	measurer := promanalysis.New(promanalysis.Options{Providers: []promanalysis.Provider{{Name: promanalysis.DefaultProvider, Address: prom.URL}}})
	driver := NewAnalysisDriver(ctx, measurer, nil, testr.New(t))
	t.Cleanup(func() { cancel(); driver.Wait() })
	s := f.startWith(v1alpha1.AnalysisSuccessful, func(o *Options) { o.Analysis, o.Registerer = driver, reg })
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })

	f.pushManifest(reviewsRollout("v2", "127.0.0.1:9002", gatedCanary("0.875")), "v2")
	ro := waitFor(t, s.r, "v2 analysed and paused", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhasePaused && len(ro.Status.Analysis) == 1 && ro.Status.Analysis[0].Phase == v1alpha1.AnalysisSuccessful
	})
	measured, ok := rolloutmetrics.ParseValue(ro.Status.Analysis[0].Metrics[0].LastValue)
	if !ok || measured != 0.875 {
		t.Fatalf("status lastValue %q: want 0.875, what the query returns", ro.Status.Analysis[0].Metrics[0].LastValue)
	}
	got := gathered(t, reg)
	for series, want := range map[string]float64{
		`sluice_analysis_metric_value{metric="ratio",namespace="default",rollout="reviews"}`:                         measured,
		`sluice_analysis_metric_threshold{condition="success",metric="ratio",namespace="default",rollout="reviews"}`: 0.5,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if _, ok := got[`sluice_analysis_metric_threshold{condition="failure",metric="ratio",namespace="default",rollout="reviews"}`]; ok {
		t.Error("a failure threshold for a metric without failureCondition")
	}
	if n := got[`sluice_rollout_reconcile_duration_seconds_count{result="success"}`]; n == 0 {
		t.Error("no step counted in sluice_rollout_reconcile_duration_seconds")
	}
	// count: 2, both Successful; each timed.
	if n := got[`sluice_analysis_measurements_total{metric="ratio",namespace="default",outcome="Successful"}`]; n != 2 {
		t.Errorf("sluice_analysis_measurements_total Successful = %v, want 2", n)
	}
	if n := got[`sluice_analysis_measurement_duration_seconds_count{result="ok"}`]; n < 2 {
		t.Errorf("%v measurements timed, want at least the 2 taken", n)
	}

	// The next rollout's status lists its own runs only: the series of the
	// last rollout's run goes.
	f.pushManifest(reviewsRollout("v3", "127.0.0.1:9003", gatedCanary("")), "v3")
	waitFor(t, s.r, "v3 paused", func(ro rolloutapi.Rollout) bool {
		return ro.Status.CanaryRevision == "v3" && ro.Status.Phase == v1alpha1.PhasePaused
	})
	for series := range gathered(t, reg) {
		if strings.HasPrefix(series, "sluice_analysis_metric_") {
			t.Errorf("%s is still exported after the next rollout began", series)
		}
	}
}

// gathered is reg's series by name and labels as the exposition format
// writes them (histograms as _count), with their values.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			labels := ""
			for i, l := range m.GetLabel() {
				if i > 0 {
					labels += ","
				}
				labels += fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
			}
			switch {
			case m.GetGauge() != nil:
				out[f.GetName()+"{"+labels+"}"] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[f.GetName()+"{"+labels+"}"] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[f.GetName()+"_count{"+labels+"}"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
