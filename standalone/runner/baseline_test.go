package runner

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// stratVsBaseline judges the candidate against the baseline the analysis
// step names, Kayenta's way: each measurement takes both revisions' error
// ratios over the last 10 s, one sample a second, and fails when the
// candidate's are significantly higher (Mann-Whitney U test). At 99.99%
// confidence two equal revisions fail a measurement once in 10,000; 11
// samples a side that do not overlap give p ≈ 1e-6.
const stratVsBaseline = `apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: vs-baseline
spec:
  metrics:
  - name: error-ratio-vs-baseline
    initialDelay: 10s
    interval: 2s
    count: 2
    compare: {window: 10s, step: 1s, confidence: "0.9999", direction: Increase}
    provider:
      prometheus:
        query: |
          (sum(rate(demo_rpcs_total{service="{{args.service}}", version="{{args.revision}}", code!="OK"}[3s])) or vector(0))
          /
          sum(rate(demo_rpcs_total{service="{{args.service}}", version="{{args.revision}}"}[3s]))
`

// TestExtraRevisionBaselineAnalysis: a fresh baseline of the stable
// version runs as an extra revision with its own backend and a share of
// the traffic next to the canary's, and a real Prometheus judges the
// canary against it (analysis baseline: baseline). A canary worse than
// its baseline is aborted: every call back on stable, the baseline
// stopped. A canary as good as its baseline passes, although stable,
// which the analysis does not look at, is better than both: the judgement
// is of the two revisions the step names.
func TestExtraRevisionBaselineAnalysis(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                          string
		stableFail, baseFail, canFail int
		abort                         bool
	}{
		{name: "canary worse than its baseline aborts", canFail: 20, abort: true},
		{name: "judged against the baseline, not stable", baseFail: 20, canFail: 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v1, base, v2 := stratBackend(t, "v1", c.stableFail), stratBackend(t, "v1-baseline", c.baseFail), stratBackend(t, "v2", c.canFail)
			spec := fmt.Sprintf(`  strategy:
    canary:
      steps:
      - setRevision:
          name: baseline
          backend: {version: v1-baseline, endpoints: [%q]}
          weight: 20
      - setWeight: 20
      - analysis:
          templates: [{name: vs-baseline}]
          baseline: baseline
      - pause: {}
`, base.Addr)
			promURL, scraped := stratPrometheus(t, v1, base, v2)
			w := stratStart(t, promURL, spec, v1)
			client := w.client()
			load := w.load("load", "reviews", 200)
			scraped()

			shipped := time.Now()
			w.repo.Push("ship v2", map[string]string{
				"reviews.yaml":     stratRollout("v2", v2.Addr, spec),
				"vs-baseline.yaml": stratVsBaseline,
			})
			w.sync.Trigger()
			ro := waitFor(t, w.r, "baseline and canary at 20% each", func(ro rolloutapi.Rollout) bool {
				return ro.Status.Abort != nil || (ro.Status.CurrentStepIndex != nil && *ro.Status.CurrentStepIndex >= 2)
			})
			if x := ro.Status.ExtraRevisions; ro.Status.Abort == nil && (len(x) != 1 || x[0].Name != "baseline" || x[0].Revision != "v1-baseline") {
				t.Fatalf("status.extraRevisions = %+v, want the baseline on v1-baseline", x)
			}

			if c.abort {
				ro = waitFor(t, w.r, "abort", func(ro rolloutapi.Rollout) bool { return ro.Status.Abort != nil })
				if a := ro.Status.Abort; a.Reason != v1alpha1.ReasonAnalysisFailed || !a.Automatic {
					t.Fatalf("abort = %+v, want the analysis' failure", a)
				}
				if len(ro.Status.ExtraRevisions) != 0 || ro.Plan.Revision("baseline") != "" {
					t.Errorf("after the abort: extra revisions %+v, plan subsets %+v; want the baseline stopped", ro.Status.ExtraRevisions, ro.Plan.Subsets)
				}
				stratWaitAll(t, load, "v1")
				before := base.Calls()
				stratOnly(t, "after the abort", xdstest.Calls(t, client, 300), 300, "v1")
				if n := base.Calls() - before; n != 0 {
					t.Errorf("the baseline answered %d calls after the abort", n)
				}
				return
			}
			ro = waitFor(t, w.r, "analysis passed", func(ro rolloutapi.Rollout) bool {
				return ro.Status.Abort != nil || stratAt(ro, "pause until promote")
			})
			if ro.Status.Abort != nil {
				t.Fatalf("aborted: %+v; the canary is as good as its baseline", ro.Status.Abort)
			}
			if h := stratHistory(t, w); !strings.Contains(h, "succeeded") {
				t.Errorf("history lacks the analysis' success:\n%s", h)
			}
			// The load since the push reached all three revisions (calls
			// that failed on purpose included: they were answered).
			split := load.Window(shipped, time.Now())
			for _, v := range []string{"v1", "v1-baseline", "v2"} {
				if split.Calls[v] == 0 {
					t.Errorf("calls since the push: %s, want some answered by each of v1, v1-baseline and v2", split)
				}
			}
		})
	}
}
