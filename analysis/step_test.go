package analysis

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestOutcomes(t *testing.T) {
	t.Parallel()
	type counts struct{ s, f, i, e int32 }
	cases := []struct {
		name   string
		mutate func(*v1alpha1.Metric)
		script []outcome
		phase  v1alpha1.AnalysisPhase // of the run
		metric v1alpha1.AnalysisPhase
		counts counts
		msg    string // in the metric's message
	}{
		{"healthy", nil, []outcome{good}, v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisSuccessful, counts{s: 3}, ""},
		{"fails after failureLimit+1", func(m *v1alpha1.Metric) { m.FailureLimit = i32(1); m.Count = i32(5) },
			[]outcome{bad}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisFailed, counts{f: 2}, "2 failed measurements, more than failureLimit 1; last: value [0.9]: failureCondition `result[0] < 0.95` is true"},
		{"a tolerated failure", func(m *v1alpha1.Metric) { m.FailureLimit = i32(1) },
			[]outcome{good, bad, good}, v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisSuccessful, counts{s: 2, f: 1}, "failureCondition"},
		{"inconclusive", nil, []outcome{good, meh}, v1alpha1.AnalysisInconclusive, v1alpha1.AnalysisInconclusive, counts{s: 1, i: 1},
			"neither successCondition `result[0] >= 0.99` nor failureCondition `result[0] < 0.95` holds"},
		{"no data is inconclusive", nil, []outcome{empty}, v1alpha1.AnalysisInconclusive, v1alpha1.AnalysisInconclusive, counts{i: 1}, "no data"},
		{"no data within the limit is still not success", func(m *v1alpha1.Metric) { m.InconclusiveLimit = i32(5) },
			[]outcome{empty}, v1alpha1.AnalysisInconclusive, v1alpha1.AnalysisInconclusive, counts{i: 3}, "none of 3 measurements was successful"},
		{"errors then Failed", func(m *v1alpha1.Metric) { m.ConsecutiveErrorLimit = i32(2) },
			[]outcome{good, qerr}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisError, counts{s: 1, e: 3}, "3 errors in a row, more than consecutiveErrorLimit 2; last: query failed: connection refused"},
		{"default limit is 4 errors in a row", nil, []outcome{qerr}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisError, counts{e: 5}, "5 errors in a row"},
		{"errors do not use up count", func(m *v1alpha1.Metric) { m.ConsecutiveErrorLimit = i32(2) },
			[]outcome{qerr, qerr, good, qerr, good, qerr, qerr, good}, v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisSuccessful, counts{s: 3, e: 5}, "connection refused"},
		{"NaN is an error", nil, []outcome{nan}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisError, counts{e: 5}, "NaN values cannot be ordered"},
		{"NaN handled by the conditions", func(m *v1alpha1.Metric) {
			m.SuccessCondition = "isNaN(result[0]) || result[0] >= 0.99"
			m.FailureCondition = "!isNaN(result[0]) && result[0] < 0.95"
		}, []outcome{nan}, v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisSuccessful, counts{s: 3}, ""},
		{"NaN no condition holds for", func(m *v1alpha1.Metric) {
			m.SuccessCondition = ""
			m.FailureCondition = "!isNaN(result[0]) && result[0] < 0.95"
		}, []outcome{nan}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisError, counts{e: 5}, "is not a finite number and no condition holds for it"},
		{"only successCondition: false fails", func(m *v1alpha1.Metric) { m.FailureCondition = "" },
			[]outcome{meh}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisFailed, counts{f: 1}, "successCondition `result[0] >= 0.99` is false"},
		{"only failureCondition: false succeeds", func(m *v1alpha1.Metric) { m.SuccessCondition = "" },
			[]outcome{meh}, v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisSuccessful, counts{s: 3}, ""},
		{"scalar result", func(m *v1alpha1.Metric) { m.SuccessCondition = "first(result) >= 0.99"; m.FailureCondition = "" },
			[]outcome{{values: []float64{0.999}, scalar: true}}, v1alpha1.AnalysisSuccessful, v1alpha1.AnalysisSuccessful, counts{s: 3}, ""},
		{"shape mismatch is an error", func(m *v1alpha1.Metric) { m.ConsecutiveErrorLimit = i32(0) },
			[]outcome{{values: []float64{0.999}, scalar: true}}, v1alpha1.AnalysisFailed, v1alpha1.AnalysisError, counts{e: 1}, "returned a single value (scalar)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := thresholdMetric("success-rate")
			if tc.mutate != nil {
				tc.mutate(&m)
			}
			run := newRun(t, m)
			drive(t, run, t0, t0.Add(time.Hour), script{"success-rate": tc.script}.measure)
			if run.Status.Phase != tc.phase {
				t.Errorf("run phase %s (%s), want %s", run.Status.Phase, run.Status.Message, tc.phase)
			}
			r := result(t, run, "success-rate")
			if r.Phase != tc.metric {
				t.Errorf("metric phase %s, want %s", r.Phase, tc.metric)
			}
			if got := (counts{r.Successful, r.Failed, r.Inconclusive, r.Error}); got != tc.counts {
				t.Errorf("counts %+v, want %+v", got, tc.counts)
			}
			if !strings.Contains(r.Message, tc.msg) {
				t.Errorf("message %q, want it to contain %q", r.Message, tc.msg)
			}
			if run.Status.CompletedAt == nil {
				t.Error("completedAt not set")
			}
			if tc.phase != v1alpha1.AnalysisSuccessful && !strings.HasPrefix(run.Status.Message, "success-rate: ") {
				t.Errorf("run message %q does not name the metric", run.Status.Message)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	m := thresholdMetric("success-rate")
	m.InitialDelay = dur(5 * time.Second)
	run := newRun(t, m)
	start := t0.Truncate(time.Second).Add(time.Second)

	out := Step(Input{Run: run, Now: t0})
	run.Status = out.Status
	if !run.Status.StartedAt.Time.Equal(start) {
		t.Fatalf("startedAt %s, want %s (the next whole second)", run.Status.StartedAt, start)
	}
	if len(out.Queries) != 0 || out.RequeueAfter != 5*time.Second+700*time.Millisecond {
		t.Fatalf("before the initial delay: %d queries, requeue %s", len(out.Queries), out.RequeueAfter)
	}
	for k := range 3 {
		at := start.Add(5*time.Second + time.Duration(k)*10*time.Second)
		now := at.Add(40 * time.Millisecond)
		out = Step(Input{Run: run, Now: now})
		if len(out.Queries) != 1 {
			t.Fatalf("measurement %d: %d queries, want 1", k, len(out.Queries))
		}
		q := out.Queries[0]
		if q.Index != int32(k) || !q.At.Equal(at) || q.Namespace != "shop" || q.Timeout != DefaultTimeout {
			t.Fatalf("measurement %d: query %+v, want index %d at %s", k, q, k, at)
		}
		if want := `sum(rate(requests_total{service="reviews",code!~"5.."}[1m])) / sum(rate(requests_total{service="reviews"}[1m]))`; q.Query != want {
			t.Fatalf("query %s, want %s", q.Query, want)
		}
		out = Step(Input{Run: run, Now: now, Results: []Result{{Metric: q.Metric, Index: q.Index, Value: Value{Values: []float64{1}}}}})
		run.Status = out.Status
		if k < 2 && out.RequeueAfter != 10*time.Second-40*time.Millisecond {
			t.Fatalf("after measurement %d: requeue %s", k, out.RequeueAfter)
		}
	}
	if run.Status.Phase != v1alpha1.AnalysisSuccessful || out.RequeueAfter != 0 || len(out.Queries) != 0 {
		t.Fatalf("after 3 measurements: phase %s, requeue %s, %d queries", run.Status.Phase, out.RequeueAfter, len(out.Queries))
	}
}

func TestResultsAreRecordedOnce(t *testing.T) {
	t.Parallel()
	run := newRun(t, thresholdMetric("success-rate"))
	out := Step(Input{Run: run, Now: t0})
	run.Status = out.Status
	now := run.Status.StartedAt.Time // slot 0
	r0 := Result{Metric: "success-rate", Index: 0, Value: Value{Values: []float64{1}}}
	cases := []struct {
		name    string
		results []Result
		taken   int32
	}{
		{"duplicate in one step", []Result{r0, r0}, 1},
		{"replayed", []Result{r0}, 1},
		{"skipping ahead", []Result{{Metric: "success-rate", Index: 5, Value: Value{Values: []float64{1}}}}, 1},
		{"not due yet", []Result{{Metric: "success-rate", Index: 1, Value: Value{Values: []float64{1}}}}, 1},
		{"unknown metric", []Result{{Metric: "nope", Index: 1}}, 1},
	}
	for _, tc := range cases {
		out = Step(Input{Run: run, Now: now, Results: tc.results})
		run.Status = out.Status
		if got := taken(&run.Status.Metrics[0]); got != tc.taken {
			t.Fatalf("%s: %d measurements recorded, want %d", tc.name, got, tc.taken)
		}
	}
}

// TestResume interrupts a run after every step, persists its status as
// JSON and continues from the decoded copy: the outcome must equal an
// uninterrupted run's, measurement for measurement.
func TestResume(t *testing.T) {
	t.Parallel()
	m := thresholdMetric("success-rate")
	m.Count = i32(6)
	m.FailureLimit = i32(3)
	sc := script{"success-rate": {good, bad, qerr, meh, good, good, bad, good}}
	m.InconclusiveLimit = i32(2)

	straight := newRun(t, m)
	drive(t, straight, t0, t0.Add(time.Hour), sc.measure)

	resumed := newRun(t, m)
	now := t0
	for range 100 {
		if resumed.Status.Phase.Completed() {
			break
		}
		// One step's worth of progress, then a "restart".
		out := Step(Input{Run: resumed, Now: now})
		var rs []Result
		for _, q := range out.Queries {
			rs = append(rs, sc.measure(q))
		}
		out = Step(Input{Run: resumed, Now: now, Results: rs})
		resumed.Status = roundTrip(t, out.Status)
		now = now.Add(3 * time.Second)
	}
	a, b := roundTrip(t, straight.Status), roundTrip(t, resumed.Status)
	// The runs complete at different moments; everything else must match.
	a.CompletedAt, b.CompletedAt = nil, nil
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.MarshalIndent(a, "", " ")
		jb, _ := json.MarshalIndent(b, "", " ")
		t.Fatalf("resumed run differs from uninterrupted run:\n%s\nvs\n%s", ja, jb)
	}
	if a.Phase != v1alpha1.AnalysisSuccessful {
		t.Fatalf("phase %s (%s), want Successful", a.Phase, a.Message)
	}
}

func roundTrip(t testing.TB, st v1alpha1.AnalysisRunState) v1alpha1.AnalysisRunState {
	t.Helper()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out v1alpha1.AnalysisRunState
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCatchUp: after an outage of five intervals, the missed measurements
// are taken one by one, each for its own slot, not skipped.
func TestCatchUp(t *testing.T) {
	t.Parallel()
	m := thresholdMetric("success-rate")
	m.Count = i32(10)
	run := newRun(t, m)
	run.Status = Step(Input{Run: run, Now: t0}).Status
	start := run.Status.StartedAt.Time
	late := start.Add(45 * time.Second)
	var slots []time.Time
	drive(t, run, late, late, func(q Query) Result {
		slots = append(slots, q.At)
		return script{"success-rate": {good}}.measure(q)
	})
	if len(slots) != 5 {
		t.Fatalf("%d measurements taken at %s, want the 5 due (slots 0, 10, 20, 30, 40 s)", len(slots), late)
	}
	for k, at := range slots {
		if want := start.Add(time.Duration(k) * 10 * time.Second); !at.Equal(want) {
			t.Errorf("measurement %d for %s, want %s", k, at, want)
		}
	}
}

func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	m := thresholdMetric("success-rate")
	m.Count = nil // until stopped
	m.FailureLimit = i32(1000)
	run := newRun(t, m)
	drive(t, run, t0, t0.Add(249*time.Second), script{"success-rate": {good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good, bad, good}}.measure)
	r := result(t, run, "success-rate")
	if taken(&r) != 25 || len(r.Measurements) != MaxHistory {
		t.Fatalf("%d taken, %d kept; want 25 and %d", taken(&r), len(r.Measurements), MaxHistory)
	}
	for i, meas := range r.Measurements {
		if want := int32(25 - MaxHistory + i); meas.Index != want {
			t.Fatalf("kept measurement %d has index %d, want %d (the latest, oldest first)", i, meas.Index, want)
		}
	}
	if r.Successful != 13 || r.Failed != 12 || r.Phase != v1alpha1.AnalysisRunning || r.LastValue != "[0.999]" {
		t.Fatalf("counters %+v", r)
	}
	if !strings.Contains(r.Message, "failureCondition") {
		t.Fatalf("message %q: want the reason of the last failure", r.Message)
	}
}

func TestRunDecision(t *testing.T) {
	t.Parallel()
	unbounded := func(m v1alpha1.Metric) v1alpha1.Metric { m.Count = nil; return m }
	dry := func(m v1alpha1.Metric) v1alpha1.Metric { m.DryRun = true; return m }
	delayed := func(m v1alpha1.Metric) v1alpha1.Metric { m.InitialDelay = dur(time.Minute); return m }
	cases := []struct {
		name      string
		metrics   []v1alpha1.Metric
		script    script
		terminate time.Duration // after this long, stop the run; 0: never
		phase     v1alpha1.AnalysisPhase
		msg       string
	}{
		{"dry run failing does not decide",
			[]v1alpha1.Metric{thresholdMetric("a"), dry(thresholdMetric("b"))},
			script{"a": {good}, "b": {bad}}, 0, v1alpha1.AnalysisSuccessful, ""},
		{"any failure decides at once",
			[]v1alpha1.Metric{thresholdMetric("a"), thresholdMetric("b")},
			script{"a": {good}, "b": {good, bad}}, 0, v1alpha1.AnalysisFailed, "b: "},
		{"inconclusive waits for metrics with a count",
			[]v1alpha1.Metric{thresholdMetric("a"), thresholdMetric("b")},
			script{"a": {meh}, "b": {good, good, bad}}, 0, v1alpha1.AnalysisFailed, "b: "},
		{"inconclusive does not wait for metrics without a count",
			[]v1alpha1.Metric{thresholdMetric("a"), unbounded(thresholdMetric("b"))},
			script{"a": {good, meh}, "b": {good}}, 0, v1alpha1.AnalysisInconclusive, "a: "},
		{"success waits for metrics without a count",
			[]v1alpha1.Metric{thresholdMetric("a"), unbounded(thresholdMetric("b"))},
			script{"a": {good}, "b": {good}}, 0, v1alpha1.AnalysisRunning, ""},
		{"terminated after success",
			[]v1alpha1.Metric{thresholdMetric("a"), unbounded(thresholdMetric("b"))},
			script{"a": {good}, "b": {good}}, 5 * time.Minute, v1alpha1.AnalysisSuccessful, ""},
		{"terminated before any measurement",
			[]v1alpha1.Metric{delayed(unbounded(thresholdMetric("a")))},
			script{"a": {empty}}, 1 * time.Second, v1alpha1.AnalysisInconclusive, "none of 0 measurements"},
		{"only dry runs complete when they do",
			[]v1alpha1.Metric{dry(thresholdMetric("a"))},
			script{"a": {bad}}, 0, v1alpha1.AnalysisSuccessful, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for i := range tc.metrics {
				tc.metrics[i].InconclusiveLimit = i32(0)
			}
			run := newRun(t, tc.metrics...)
			stop := t0.Add(time.Hour)
			if tc.terminate > 0 {
				stop = t0.Add(tc.terminate)
			}
			now := drive(t, run, t0, stop, tc.script.measure)
			if tc.terminate > 0 {
				run.Spec.Terminate = true
				run.Status = Step(Input{Run: run, Now: now}).Status
			}
			if run.Status.Phase != tc.phase || !strings.Contains(run.Status.Message, tc.msg) {
				t.Fatalf("phase %s (%q), want %s (%q)", run.Status.Phase, run.Status.Message, tc.phase, tc.msg)
			}
		})
	}
}

func TestConfigurationErrorEndsTheRun(t *testing.T) {
	t.Parallel()
	run := newRun(t, thresholdMetric("success-rate"))
	// A run whose spec lost an argument (hand-edited, say) cannot render
	// its query: the run ends in Error, which is not a verdict on the
	// revision.
	var args []v1alpha1.Argument
	for _, a := range run.Spec.Args {
		if a.Name != "service" {
			args = append(args, a)
		}
	}
	run.Spec.Args = args
	out := Step(Input{Run: run, Now: t0})
	if out.Status.Phase != v1alpha1.AnalysisError || !strings.Contains(out.Status.Message, `argument "service" has no value`) {
		t.Fatalf("phase %s (%s), want Error naming the argument", out.Status.Phase, out.Status.Message)
	}
	if len(out.Queries) != 0 {
		t.Fatal("queries from a run that cannot run")
	}
	// A completed run stays as it is.
	run.Status = out.Status
	if again := Step(Input{Run: run, Now: t0.Add(time.Hour)}); !reflect.DeepEqual(again.Status, out.Status) {
		t.Fatal("a completed run changed")
	}
}

func TestStepIsDeterministic(t *testing.T) {
	t.Parallel()
	run := newRun(t, thresholdMetric("a"), thresholdMetric("b"))
	drive(t, run, t0, t0.Add(15*time.Second), script{"a": {good, bad}, "b": {meh}}.measure)
	in := Input{Run: run, Now: t0.Add(20 * time.Second), Results: []Result{
		{Metric: "a", Index: 2, Value: Value{Values: []float64{0.5}}},
		{Metric: "b", Index: 2, Value: Value{Values: []float64{1}}},
	}}
	before := run.DeepCopy()
	a, b := Step(in), Step(in)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two steps on the same input differ")
	}
	if !reflect.DeepEqual(before, run) {
		t.Fatal("Step modified its input")
	}
}
