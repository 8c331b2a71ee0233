package analysis

import (
	"errors"
	"math"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// t0 has a fraction of a second on purpose: StartedAt must round it up.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 300_000_000, time.UTC)

var builtins = []v1alpha1.Argument{
	{Name: "rollout", Value: "reviews"},
	{Name: "namespace", Value: "shop"},
	{Name: "service", Value: "reviews"},
	{Name: "host", Value: "reviews.shop.svc.cluster.local"},
	{Name: "stableRevision", Value: "v1"},
	{Name: "canaryRevision", Value: "v2"},
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
func i32(v int32) *int32                   { return &v }

// thresholdMetric is a success-rate style metric: Successful at ≥ 0.99,
// Failed below 0.95, Inconclusive in between.
func thresholdMetric(name string) v1alpha1.Metric {
	return v1alpha1.Metric{
		Name:             name,
		Interval:         dur(10 * time.Second),
		Count:            i32(3),
		SuccessCondition: "result[0] >= 0.99",
		FailureCondition: "result[0] < 0.95",
		Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
			Query: `sum(rate(requests_total{service="{{args.service}}",code!~"5.."}[1m])) / sum(rate(requests_total{service="{{args.service}}"}[1m]))`,
		}},
	}
}

func template(name string, metrics ...v1alpha1.Metric) *v1alpha1.AnalysisTemplate {
	return &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec:       v1alpha1.AnalysisTemplateSpec{Metrics: metrics},
	}
}

func newRun(t testing.TB, metrics ...v1alpha1.Metric) *v1alpha1.AnalysisRun {
	t.Helper()
	run, err := NewRun("reviews-v2-1-step-4", "shop", []*v1alpha1.AnalysisTemplate{template("t", metrics...)}, builtins)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// outcome is what a fake measurement returns.
type outcome struct {
	values []float64
	scalar bool
	err    error
}

func vec(xs ...float64) outcome { return outcome{values: xs} }

var (
	good  = vec(0.999)
	bad   = vec(0.9)
	meh   = vec(0.97)
	empty = vec()
	nan   = vec(math.NaN())
	qerr  = outcome{err: errors.New("query failed: connection refused")}
)

// script gives each metric its outcomes in order; past the end, the last
// one repeats.
type script map[string][]outcome

func (s script) measure(q Query) Result {
	os := s[q.Metric]
	o := os[min(int(q.Index), len(os)-1)]
	return Result{Metric: q.Metric, Index: q.Index, Value: Value{Scalar: o.scalar, Values: o.values}, Err: o.err}
}

// drive runs the state machine from now, answering queries with measure
// and jumping to each requeue time, until the run completes or until
// stop. It returns the run (status updated) and the time it stopped.
func drive(t testing.TB, run *v1alpha1.AnalysisRun, now, stop time.Time, measure func(Query) Result) time.Time {
	t.Helper()
	for range 10_000 {
		out := Step(Input{Run: run, Now: now})
		run.Status = out.Status
		if len(out.Queries) > 0 {
			var rs []Result
			for _, q := range out.Queries {
				if q.At.After(now) {
					t.Fatalf("query for %s #%d at %s is in the future (now %s)", q.Metric, q.Index, q.At, now)
				}
				rs = append(rs, measure(q))
			}
			out = Step(Input{Run: run, Now: now, Results: rs})
			run.Status = out.Status
			continue
		}
		if run.Status.Phase.Completed() || out.RequeueAfter == 0 {
			return now
		}
		next := now.Add(out.RequeueAfter)
		if next.After(stop) {
			return now
		}
		now = next
	}
	t.Fatal("run did not settle")
	return now
}

func result(t testing.TB, run *v1alpha1.AnalysisRun, name string) v1alpha1.MetricResult {
	t.Helper()
	for _, r := range run.Status.Metrics {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no result for metric %q in %+v", name, run.Status.Metrics)
	return v1alpha1.MetricResult{}
}

func nanF() float64 { return math.NaN() }
