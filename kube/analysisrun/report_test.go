package analysisrun

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestCompletions(t *testing.T) {
	t.Parallel()
	const (
		running      = v1alpha1.AnalysisRunning
		successful   = v1alpha1.AnalysisSuccessful
		failed       = v1alpha1.AnalysisFailed
		inconclusive = v1alpha1.AnalysisInconclusive
	)
	state := func(run v1alpha1.AnalysisPhase, metrics ...v1alpha1.MetricResult) *v1alpha1.AnalysisRunState {
		return &v1alpha1.AnalysisRunState{Phase: run, Message: "because", Metrics: metrics}
	}
	metric := func(name string, p v1alpha1.AnalysisPhase, ok, bad int32) v1alpha1.MetricResult {
		return v1alpha1.MetricResult{Name: name, Phase: p, Successful: ok, Failed: bad}
	}
	cases := []struct {
		name      string
		prev, cur *v1alpha1.AnalysisRunState
		want      []string
	}{{
		name: "a measurement that completes nothing says nothing",
		prev: state(running, metric("a", running, 1, 0)),
		cur:  state(running, metric("a", running, 2, 0)),
	}, {
		name: "a metric that completes, the run still running",
		prev: state(running, metric("a", running, 2, 0), metric("b", running, 0, 0)),
		cur:  state(running, metric("a", successful, 3, 0), metric("b", running, 1, 0)),
		want: []string{"Normal MetricSuccessful Measure metric a Successful after 3 measurements"},
	}, {
		name: "a failing metric fails the run",
		prev: state(running, metric("a", running, 0, 1)),
		cur:  state(failed, metric("a", failed, 0, 2)),
		want: []string{"Warning MetricFailed Measure metric a Failed after 2 measurements", "Warning RunFailed Complete analysis run Failed: because"},
	}, {
		name: "a metric completed earlier is not announced again",
		prev: state(running, metric("a", successful, 3, 0), metric("b", running, 0, 0)),
		cur:  state(inconclusive, metric("a", successful, 3, 0), metric("b", inconclusive, 0, 0)),
		want: []string{"Warning MetricInconclusive Measure metric b Inconclusive after 0 measurements", "Warning RunInconclusive Complete analysis run Inconclusive: because"},
	}, {
		name: "a run that cannot run at all",
		prev: &v1alpha1.AnalysisRunState{},
		cur:  &v1alpha1.AnalysisRunState{Phase: v1alpha1.AnalysisError, Message: "cannot run: metric \"a\": no provider"},
		want: []string{"Warning RunError Complete analysis run Error: cannot run: metric \"a\": no provider"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, e := range completions(tc.prev, tc.cur) {
				got = append(got, strings.Join([]string{e.typ, e.reason, e.action, e.note}, " "))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
	}{
		{"short", "query failed"},
		{"exactly the limit", strings.Repeat("x", maxNote)},
		{"ASCII over the limit", strings.Repeat("x", 3*maxNote)},
		{"multi-byte characters across the cut", strings.Repeat("é", maxNote)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := truncate(tc.in)
			switch {
			case len(got) > maxNote || !utf8.ValidString(got):
				t.Errorf("%d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			case len(tc.in) <= maxNote && got != tc.in:
				t.Errorf("a note within the limit changed")
			case len(tc.in) > maxNote && (!strings.HasSuffix(got, "…") || !strings.HasPrefix(tc.in, strings.TrimSuffix(got, "…"))):
				t.Errorf("a long note is not its beginning and an ellipsis: %q", got)
			}
		})
	}
}

func TestOptionsCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults", opts: Options{}},
		{name: "an http address", opts: defaultAt("http://prometheus.monitoring:9090")},
		{name: "an https address with a path", opts: defaultAt("https://mimir.example.com/prometheus")},
		{name: "no scheme", opts: defaultAt("prometheus:9090"), wantErr: `Prometheus provider "default": address "prometheus:9090": want an http(s) URL`},
		{name: "no host", opts: defaultAt("http://"), wantErr: "want an http(s) URL"},
		{name: "negative timeout", opts: Options{MaxMeasurementTimeout: -time.Second}, wantErr: "must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.opts.check()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
