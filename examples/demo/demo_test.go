package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/internal/testbin"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The demo's flow as a test, with shorter pauses and analysis intervals:
// real grpc-go xDS client, real Prometheus, real Git. Each test takes about
// 20 s; they run in parallel.

// TestDemoInProcess runs Sluice's parts inside the test process.
func TestDemoInProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end to end, about 20 s")
	}
	prom := prometheusBinary(t)
	var sl *inProcess
	rep := playTest(t, prom, "", func(ctx context.Context, s sluiceSetup) (sluiceInstance, error) {
		var err error
		sl, err = startInProcess(ctx, s)
		return sl, err
	}, func() string {
		if sl == nil {
			return ""
		}
		return sl.logs.String()
	}, nil)
	checkReport(t, rep)
}

// TestDemoBinary runs the real `sluice run` as a subprocess, built from
// this tree, as `make demo KEEP=1` does: the timeline starts with the
// dashboard's URL and a read token, which logs in and shows the rollback,
// and everything keeps running after the scenario until told to stop.
func TestDemoBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the sluice binary")
	}
	prom := prometheusBinary(t)
	bin := buildSluice(t)
	logs := &tail{}
	rep := playTest(t, prom, bin, func(ctx context.Context, s sluiceSetup) (sluiceInstance, error) {
		return startSluiceProcess(ctx, bin, s, logs)
	}, logs.String, checkDashboard)
	checkReport(t, rep)
}

// checkDashboard logs in to the dashboard the timeline names, with the
// token it prints, while the demo keeps running: the Rollout's page shows
// Sluice's revert commit, and the read token offers no command.
func checkDashboard(t *testing.T, timeline string) {
	t.Helper()
	m := regexp.MustCompile(`dashboard +(http://\S+/dashboard/) .*\n +log in with the read token (sluice_[0-9a-f]+) `).FindStringSubmatch(timeline)
	if m == nil {
		t.Fatalf("the timeline names no dashboard and token:\n%s", timeline)
	}
	if !strings.Contains(timeline, "Everything keeps running") || !strings.Contains(timeline, "Ctrl-C stops it all") {
		t.Errorf("the timeline does not say it keeps running:\n%s", timeline)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.PostForm(m[1]+"login", url.Values{"token": {m[2]}, "next": {"rollouts/" + namespace + "/" + rollout}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<span class=\"who\">you", "Revert", "sluice: roll back echo to v2"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the dashboard's page of %s/%s lacks %q:\n%s", namespace, rollout, want, page)
		}
	}
	if strings.Contains(string(page), `id="action-`) {
		t.Error("the read token is offered commands")
	}
}

// Test timings: the quickstart's 5 s pauses become 3 s (still some 800
// calls to judge a step's split by), the analysis measures twice, a second
// apart, over a 5 s rate window.
var testTimings = []struct{ file, old, new string }{
	{"rollout.yaml", "duration: 5s", "duration: 3s"},
	{"analysis.yaml", "interval: 2s", "interval: 1s"},
	{"analysis.yaml", "count: 3", "count: 2"},
	{"analysis.yaml", "value: 10s", "value: 5s"},
}

const (
	testRate  = 300 // calls per second
	testCount = 2   // measurements of a successful run
)

func tune(name, content string) (string, error) {
	for _, e := range testTimings {
		if e.file != name {
			continue
		}
		if !strings.Contains(content, e.old) {
			return "", fmt.Errorf("%q not found: keep testTimings in line with examples/quickstart", e.old)
		}
		content = strings.ReplaceAll(content, e.old, e.new)
	}
	return content, nil
}

// playTest plays the demo and returns its report; on failure it logs the
// timeline so far and Sluice's log.
//
// With keep, the demo keeps running after the scenario (options.Keep)
// until keep, given the timeline so far, returns.
func playTest(t *testing.T, prom, bin string, start func(context.Context, sluiceSetup) (sluiceInstance, error), logs func() string,
	keep func(t *testing.T, timeline string)) *report {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	var timeline tail
	began := time.Now()
	o := options{
		SluiceBin: bin, PrometheusBin: prom, Quickstart: filepath.Join(root, "examples", "quickstart"),
		Rate: testRate, Settle: time.Second, Tune: tune, Out: &timeline, StartSluice: start,
	}
	var stopKeeping context.CancelFunc
	if keep != nil {
		o.Keep, stopKeeping = context.WithCancel(ctx)
		defer stopKeeping()
	}
	type result struct {
		rep *report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := play(ctx, o)
		done <- result{rep, err}
	}()
	if keep != nil {
		// Until the demo says it keeps running, or ends (with an error,
		// reported below).
		keeping := func() bool { return strings.Contains(timeline.String(), "Ctrl-C stops it all") }
		for !keeping() && len(done) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if keeping() {
			keep(t, timeline.String())
		}
		stopKeeping()
	}
	r := <-done
	rep, err := r.rep, r.err
	t.Logf("timeline (%s):\n%s", time.Since(began).Round(100*time.Millisecond), timeline.String())
	if err != nil {
		t.Fatalf("demo: %v\nsluice log:\n%s", err, logs())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sluice log:\n%s", logs())
		}
	})
	return rep
}

// checkReport asserts what the demo promises: each step's observed split,
// the verdicts of the analysis from real Prometheus, the automatic
// rollback of v3, and the revert commit.
func checkReport(t *testing.T, rep *report) {
	t.Helper()
	only(t, "v1 alone", rep.Baseline, "v1")

	// v2: six steps in order, each split as its weight says, promoted.
	checkSteps(t, rep.Good, "v1", []string{"setWeight 10", "pause 3s", "step analysis echo-success-rate", "setWeight 50", "pause 3s", "promote to 100%"})
	run := analysisRun(t, rep.Good)
	if m := metric(t, run); run.Phase != v1alpha1.AnalysisSuccessful || m.Phase != v1alpha1.AnalysisSuccessful || m.Successful != testCount || m.LastValue != "[0]" {
		t.Errorf("v2 analysis: run %s, metric %+v; want Successful with %d measurements of [0]", run.Phase, m, testCount)
	}
	if e := rep.Good.End; e == nil || e.Kind != kindStable {
		t.Fatalf("v2 did not end stable: %+v", e)
	}
	only(t, "v2 promoted", rep.Good.End, "v2")

	// v3: the analysis fails on the error ratio Prometheus measured; the
	// rollout is aborted at that step and traffic goes back to v2.
	checkSteps(t, rep.Bad, "v2", []string{"setWeight 10", "pause 3s", "step analysis echo-success-rate"})
	run = analysisRun(t, rep.Bad)
	m := metric(t, run)
	ratio := lastValue(t, m)
	if run.Phase != v1alpha1.AnalysisFailed || m.Phase != v1alpha1.AnalysisFailed || m.Failed != 1 || ratio < 0.2 || ratio > 0.4 {
		t.Errorf("v3 analysis: run %s, metric %+v; want Failed at the first measurement, an error ratio near 0.3", run.Phase, m)
	}
	if rep.Abort.Reason != v1alpha1.ReasonAnalysisFailed || !strings.Contains(rep.Abort.Message, run.Name) {
		t.Errorf("abort event %+v; want %s naming run %s", rep.Abort, v1alpha1.ReasonAnalysisFailed, run.Name)
	}
	only(t, "after the abort", rep.Bad.End, "v2")

	// Git: Sluice's revert names v2 again, with its endpoint.
	if rep.RevertAuthor != sluiceAuthor || !strings.HasPrefix(rep.RevertMessage, "sluice: roll back echo to v2") || !strings.Contains(rep.RevertMessage, "Sluice-Failed-Revision: v3") {
		t.Errorf("revert commit by %q:\n%s", rep.RevertAuthor, rep.RevertMessage)
	}
	if !strings.Contains(rep.RevertedFile, "version: v2\n") || strings.Contains(rep.RevertedFile, "version: v3") {
		t.Errorf("rollout.yaml after the revert does not name v2 alone:\n%s", rep.RevertedFile)
	}
	if r := rep.Restored; r == nil || r.Status.Phase != v1alpha1.PhaseHealthy || r.Status.StableRevision != "v2" {
		t.Errorf("after the revert was applied: %+v; want Healthy on v2", r)
	}
}

// checkSteps asserts the steps were seen in order, and that while each
// was in force the canary's share of the calls fits its weight.
func checkSteps(t *testing.T, a act, stable string, labels []string) {
	t.Helper()
	if len(a.Steps) != len(labels) {
		t.Fatalf("%s: %d steps seen, want %d (%q)", a.Version, len(a.Steps), len(labels), labels)
	}
	for i, s := range a.Steps {
		if s.Index != i || s.Label != labels[i] {
			t.Errorf("%s: step %d is %d %q; want %d %q", a.Version, i, s.Index, s.Label, i, labels[i])
		}
		if strings.HasPrefix(s.Label, "setWeight") || strings.HasPrefix(s.Label, "promote") {
			continue // over as soon as acknowledged: the next step shows its weights
		}
		// Pauses last seconds: enough calls to judge. An analysis may end
		// at its first measurement, within a second.
		sp := s.Split
		if strings.HasPrefix(s.Label, "pause") && sp.Total < testRate/2 {
			t.Errorf("%s step %d %q: only %d calls measured", a.Version, i+1, s.Label, sp.Total)
		}
		if sp.Total == 0 {
			continue
		}
		if n := sp.Calls[stable] + sp.Calls[a.Version]; n != sp.Total {
			t.Errorf("%s step %d: calls %v; want only %s and %s", a.Version, i+1, sp.Calls, stable, a.Version)
		}
		// checkReport calls checkSteps twice; each call gets half the
		// test's false-failure budget, shared by its steps (Bonferroni, see
		// binomial.Alpha). A correct split fails once in a million runs;
		// the weight of a neighbouring step always fails.
		lo, hi := binomial.Interval(sp.Total, float64(s.Weight)/100, binomial.Alpha(2*len(a.Steps)))
		got := sp.Calls[a.Version]
		t.Logf("%s step %d %q at %d%%: %d of %d calls, interval [%d, %d]", a.Version, i+1, s.Label, s.Weight, got, sp.Total, lo, hi)
		if got < lo || got > hi {
			t.Errorf("%s step %d %q at %d%%: canary answered %d of %d calls, outside [%d, %d]", a.Version, i+1, s.Label, s.Weight, got, sp.Total, lo, hi)
		}
		if f := sp.Failed[stable]; f > 0 {
			t.Errorf("%s step %d: %d calls to the stable %s failed", a.Version, i+1, f, stable)
		}
	}
}

// only asserts that version answered every call measured in s.
func only(t *testing.T, what string, s *segment, version string) {
	t.Helper()
	if s == nil {
		t.Fatalf("%s: not seen", what)
	}
	sp := s.Split
	if sp.Total < testRate/2 || sp.Calls[version] != sp.Total || sp.Failed[version] != 0 {
		t.Errorf("%s: %d calls, by version %v, failed %v; want at least %d, all answered by %s", what, sp.Total, sp.Calls, sp.Failed, testRate/2, version)
	}
}

func analysisRun(t *testing.T, a act) v1alpha1.AnalysisRunStatus {
	t.Helper()
	for _, s := range a.Steps {
		if len(s.Runs) == 1 {
			return s.Runs[0]
		}
	}
	t.Fatalf("%s: no step with exactly one analysis run", a.Version)
	return v1alpha1.AnalysisRunStatus{}
}

func metric(t *testing.T, r v1alpha1.AnalysisRunStatus) v1alpha1.MetricSummary {
	t.Helper()
	if len(r.Metrics) != 1 || r.Metrics[0].Name != "error-ratio" {
		t.Fatalf("run %s: metrics %+v; want error-ratio", r.Name, r.Metrics)
	}
	return r.Metrics[0]
}

// lastValue reads a one-series vector, "[0.296703]".
func lastValue(t *testing.T, m v1alpha1.MetricSummary) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(strings.Trim(m.LastValue, "[]"), 64)
	if err != nil {
		t.Fatalf("metric %s: last value %q: %v", m.Name, m.LastValue, err)
	}
	return v
}

// prometheusBinary is bin/prometheus (or $SLUICE_BIN_DIR/prometheus). When
// it is missing the test is skipped, except with CI=true, where it fails:
// CI must never pass by skipping.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	return testbin.Path(t, "prometheus")
}

// buildSluice builds cmd/sluice from this tree, so the test never runs a
// stale bin/sluice.
func buildSluice(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin
}
