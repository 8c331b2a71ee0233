package analysis

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
)

func str(s string) *string { return &s }

func TestNewRun(t *testing.T) {
	t.Parallel()
	withArgs := func(name string, args []v1alpha1.ArgumentSpec, metrics ...v1alpha1.Metric) *v1alpha1.AnalysisTemplate {
		tpl := template(name, metrics...)
		tpl.Spec.Args = args
		return tpl
	}
	m := func(name, query string) v1alpha1.Metric {
		mm := thresholdMetric(name)
		mm.Provider.Prometheus.Query = query
		return mm
	}
	windowed := m("rate", `sum(rate(x{service="{{args.service}}",code="{{args.code}}"}[{{args.window}}]))`)
	cases := []struct {
		name      string
		templates []*v1alpha1.AnalysisTemplate
		args      []v1alpha1.Argument
		wantArgs  map[string]string // subset of the run's args
		wantErr   string
	}{
		{
			name:      "defaults fill in",
			templates: []*v1alpha1.AnalysisTemplate{withArgs("t", []v1alpha1.ArgumentSpec{{Name: "window", Value: str("5m")}, {Name: "code", Value: str("500")}}, windowed)},
			args:      builtins,
			wantArgs:  map[string]string{"window": "5m", "code": "500", "service": "reviews", "canaryRevision": "v2"},
		},
		{
			name:      "passed arguments win",
			templates: []*v1alpha1.AnalysisTemplate{withArgs("t", []v1alpha1.ArgumentSpec{{Name: "window", Value: str("5m")}, {Name: "code", Value: str("500")}}, windowed)},
			args:      append([]v1alpha1.Argument{{Name: "window", Value: "1m"}}, builtins...),
			wantArgs:  map[string]string{"window": "1m", "code": "500"},
		},
		{
			name:      "required argument missing",
			templates: []*v1alpha1.AnalysisTemplate{withArgs("errors", []v1alpha1.ArgumentSpec{{Name: "window", Value: str("5m")}, {Name: "code"}}, windowed)},
			args:      builtins,
			wantErr:   `argument "code" of template "errors" has no default and is not passed`,
		},
		{
			name:      "argument nobody declares",
			templates: []*v1alpha1.AnalysisTemplate{template("t", thresholdMetric("a"))},
			args:      append([]v1alpha1.Argument{{Name: "windw", Value: "1m"}}, builtins...),
			wantErr:   `argument "windw" is passed but no template declares it (templates: t)`,
		},
		{
			name:      "argument passed twice",
			templates: []*v1alpha1.AnalysisTemplate{template("t", thresholdMetric("a"))},
			args:      append([]v1alpha1.Argument{{Name: "service", Value: "x"}}, builtins...),
			wantErr:   `argument "service" is passed twice`,
		},
		{
			name: "conflicting defaults",
			templates: []*v1alpha1.AnalysisTemplate{
				withArgs("a", []v1alpha1.ArgumentSpec{{Name: "window", Value: str("5m")}}, thresholdMetric("a")),
				withArgs("b", []v1alpha1.ArgumentSpec{{Name: "window", Value: str("1m")}}, thresholdMetric("b")),
			},
			args:    builtins,
			wantErr: `argument "window" has default "5m" in template "a" but "1m" in template "b"; pass it explicitly`,
		},
		{
			name: "same metric in two templates",
			templates: []*v1alpha1.AnalysisTemplate{
				template("a", thresholdMetric("success-rate")),
				template("b", thresholdMetric("success-rate")),
			},
			args:    builtins,
			wantErr: `metric "success-rate" is defined by both template "a" and template "b"`,
		},
		{
			name:      "unsafe value outside quotes",
			templates: []*v1alpha1.AnalysisTemplate{withArgs("t", []v1alpha1.ArgumentSpec{{Name: "window", Value: str("5m]) or vector(1")}, {Name: "code", Value: str("500")}}, windowed)},
			args:      builtins,
			wantErr:   `metric "rate": argument "window": value "5m]) or vector(1" stands inside [ ] outside a quoted string`,
		},
		{
			name:      "built-in not passed",
			templates: []*v1alpha1.AnalysisTemplate{template("t", thresholdMetric("a"))},
			args:      nil,
			wantErr:   `metric "a": argument "service" has no value`,
		},
		{
			name: "bad condition",
			templates: []*v1alpha1.AnalysisTemplate{template("t", func() v1alpha1.Metric {
				mm := thresholdMetric("a")
				mm.SuccessCondition = "result[0] >>= 1"
				return mm
			}())},
			args:    builtins,
			wantErr: `metric "a": successCondition: Syntax error`,
		},
		{name: "no templates", wantErr: "at least one template"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run, err := NewRun("r", "shop", tc.templates, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewRun error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for i, a := range run.Spec.Args {
				got[a.Name] = a.Value
				if i > 0 && run.Spec.Args[i-1].Name >= a.Name {
					t.Errorf("args not sorted by name: %v", run.Spec.Args)
				}
			}
			for k, v := range tc.wantArgs {
				if got[k] != v {
					t.Errorf("arg %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestNewRunCopiesMetrics(t *testing.T) {
	t.Parallel()
	a, b := template("a", thresholdMetric("x")), template("b", thresholdMetric("y"), thresholdMetric("z"))
	run, err := NewRun("reviews-1", "shop", []*v1alpha1.AnalysisTemplate{a, b}, builtins)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range run.Spec.Metrics {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "x,y,z" || len(run.Spec.Templates) != 2 || run.Spec.Templates[1].Name != "b" {
		t.Fatalf("metrics %v, templates %v", names, run.Spec.Templates)
	}
	if run.Kind != "AnalysisRun" || run.APIVersion != "sluice.dev/v1alpha1" || run.Namespace != "shop" || run.Name != "reviews-1" {
		t.Fatalf("object meta %+v %+v", run.TypeMeta, run.ObjectMeta)
	}
	// Editing the template later does not reach the run.
	a.Spec.Metrics[0].SuccessCondition = "false"
	if run.Spec.Metrics[0].SuccessCondition == "false" {
		t.Fatal("run shares its metrics with the template")
	}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	cmp := func(dir v1alpha1.CompareDirection, conf string) v1alpha1.Metric {
		return v1alpha1.Metric{
			Name:     "latency",
			Interval: dur(time.Minute),
			Count:    i32(1),
			Compare:  &v1alpha1.MetricCompare{Window: dur(5 * time.Minute), Step: dur(30 * time.Second), Direction: dir, Confidence: conf},
			Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
				Query: `histogram_quantile(0.99, sum by (le) (rate(latency_bucket{service="{{args.service}}",version="{{args.revision}}",subset="{{args.subset}}"}[1m])))`,
			}},
		}
	}
	low := []float64{10, 11, 12, 10, 11, 13, 12, 10, 11, 12}
	high := []float64{20, 21, 19, 22, 20, 21, 23, 20, 19, 22}
	cases := []struct {
		name           string
		metric         v1alpha1.Metric
		stable, canary []float64
		phase          v1alpha1.AnalysisPhase
		msg            string
	}{
		{"canary slower fails", cmp("", ""), low, high, v1alpha1.AnalysisFailed, "canary is significantly higher than stable: canary 20.5 vs stable 11 (p="},
		{"canary faster passes", cmp("", ""), high, low, v1alpha1.AnalysisSuccessful, ""},
		{"same passes", cmp("", ""), low, low, v1alpha1.AnalysisSuccessful, ""},
		{"decrease: canary lower fails", cmp(v1alpha1.CompareDecrease, ""), high, low, v1alpha1.AnalysisFailed, "significantly lower"},
		{"either: canary lower fails", cmp(v1alpha1.CompareEither, "0.99"), high, low, v1alpha1.AnalysisFailed, "significantly lower"},
		{"too few samples", cmp("", "0.99"), low[:3], high[:3], v1alpha1.AnalysisInconclusive, "too few to reach confidence 0.99"},
		{"no canary data", cmp("", ""), low, []float64{nanF(), nanF()}, v1alpha1.AnalysisInconclusive, "no data: 10 stable and 0 canary samples"},
		{"NaN samples are left out", cmp("", ""), append(low, nanF()), append(high, nanF()), v1alpha1.AnalysisFailed, "significantly higher"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := newRun(t, tc.metric)
			now := t0.Add(time.Second) // the first slot, t0 rounded up
			run.Status = Step(Input{Run: run, Now: t0}).Status
			out := Step(Input{Run: run, Now: now})
			if len(out.Queries) != 1 || out.Queries[0].Compare == nil {
				t.Fatalf("queries %+v, want one compare query", out.Queries)
			}
			c := out.Queries[0].Compare
			if !strings.Contains(c.Stable, `version="v1",subset="stable"`) || !strings.Contains(c.Canary, `version="v2",subset="canary"`) || c.Window != 5*time.Minute || c.Step != 30*time.Second {
				t.Fatalf("compare query %+v", c)
			}
			run.Status = out.Status
			out = Step(Input{Run: run, Now: now, Results: []Result{{Metric: "latency", Index: 0, Stable: tc.stable, Canary: tc.canary}}})
			r := out.Status.Metrics[0]
			if r.Phase != tc.phase || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("phase %s (%q, value %q), want %s (%q)", r.Phase, r.Message, r.LastValue, tc.phase, tc.msg)
			}
		})
	}
}

func TestCompareNeedsTheSidesApart(t *testing.T) {
	t.Parallel()
	m := v1alpha1.Metric{
		Name:     "latency",
		Compare:  &v1alpha1.MetricCompare{},
		Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{Query: `sum(rate(x{service="{{args.service}}"}[1m]))`}},
	}
	_, err := NewRun("r", "shop", []*v1alpha1.AnalysisTemplate{template("t", m)}, builtins)
	if err == nil || !strings.Contains(err.Error(), "the query is the same for stable and canary") {
		t.Fatalf("err = %v", err)
	}
}

func TestObservation(t *testing.T) {
	t.Parallel()
	run := newRun(t, thresholdMetric("a"), thresholdMetric("b"))
	if o := Observation(run); o.Phase != v1alpha1.AnalysisRunning || o.Metrics != nil || o.Name != run.Name {
		t.Fatalf("before the first step: %+v", o)
	}
	drive(t, run, t0, t0.Add(time.Hour), script{"a": {good, meh, good}, "b": {good, bad}}.measure)
	o := Observation(run)
	want := []v1alpha1.MetricSummary{
		{Name: "a", Phase: v1alpha1.AnalysisInconclusive, LastValue: "[0.97]", Successful: 1, Inconclusive: 1,
			Message: "1 inconclusive measurements, more than inconclusiveLimit 0; last: value [0.97]: neither successCondition `result[0] >= 0.99` nor failureCondition `result[0] < 0.95` holds"},
		{Name: "b", Phase: v1alpha1.AnalysisFailed, LastValue: "[0.9]", Successful: 1, Failed: 1,
			Message: "1 failed measurements, more than failureLimit 0; last: value [0.9]: failureCondition `result[0] < 0.95` is true"},
	}
	if o.Phase != v1alpha1.AnalysisFailed || !strings.HasPrefix(o.Message, "b: 1 failed measurements") {
		t.Fatalf("observation %s %q", o.Phase, o.Message)
	}
	if len(o.Metrics) != 2 || o.Metrics[0] != want[0] || o.Metrics[1] != want[1] {
		t.Fatalf("metrics\n%+v\nwant\n%+v", o.Metrics, want)
	}
}

func TestErrorObservation(t *testing.T) {
	t.Parallel()
	_, err := NewRun("r", "shop", []*v1alpha1.AnalysisTemplate{template("t", thresholdMetric("a"))}, nil)
	o := ErrorObservation("r", err)
	if o.Phase != v1alpha1.AnalysisError || o.Message != `cannot run: metric "a": argument "service" has no value` {
		t.Fatalf("%+v", o)
	}
}

// TestCompareArgsAgreeWithValidation: validation accepts in compare
// queries exactly the arguments compile binds.
func TestCompareArgsAgreeWithValidation(t *testing.T) {
	t.Parallel()
	if got := []string{ArgRevision, ArgSubset}; !slices.Equal(got, validation.CompareArgs) {
		t.Fatalf("analysis binds %v, validation allows %v", got, validation.CompareArgs)
	}
}
