package dashboard

import (
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// TestRolloutPageShowsEachPart: the rollout page has every part the
// dashboard promises, each in words a test can find: the step timeline
// (a finished step's duration, the current pause's start and time left,
// counted from the data plane's acknowledgement),
// a bar per route with its text equivalent, the data plane's ACKed,
// NACKed and stale proxies, the analysis chart with its thresholds,
// verdicts and measurements as text, the Git card (forge link, rejected
// commit with its problems, revert after a rollback) and the events,
// newest first.
func TestRolloutPageShowsEachPart(t *testing.T) {
	t.Parallel()
	ro := canaryRollout()
	st := &ro.Status
	entered0, entered1 := tNow.Add(-50*time.Second), tNow.Add(-20*time.Second)
	started := metav1.NewTime(entered1)
	st.StepStartedAt = &started
	st.Traffic.StaleNodes = &v1alpha1.StaleNodesStatus{Count: 1, Nodes: []string{"old-proxy"}}
	since := tNow.Add(-2 * time.Minute)
	ro.Detail.DataPlane.Subscribed = 3
	ro.Detail.DataPlane.Pending = []rolloutapi.Proxy{{Node: "old-proxy", Stream: 2, Since: &since}}
	ro.Detail.DataPlane.Rejected = []rolloutapi.Proxy{{Node: "picky-proxy", Stream: 3, Error: "route default: weights sum to 99", TypeURL: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"}}
	st.Analysis = []v1alpha1.AnalysisRunStatus{{Name: "web-v2-step-1", Kind: v1alpha1.AnalysisStepKind, Phase: v1alpha1.AnalysisSuccessful,
		Metrics: []v1alpha1.MetricSummary{{Name: "success-rate", Phase: v1alpha1.AnalysisSuccessful, Successful: 2, Failed: 1, LastValue: "0.98"}}}}
	var ms []v1alpha1.Measurement
	for i, v := range []string{"0.97", "0.85", "0.98"} {
		phase := v1alpha1.AnalysisSuccessful
		if v == "0.85" {
			phase = v1alpha1.AnalysisFailed
		}
		ms = append(ms, v1alpha1.Measurement{Index: int32(i), Phase: phase, At: metav1.NewTime(tNow.Add(time.Duration(i-3) * 10 * time.Second)), Value: v})
	}
	ro.Detail.Analysis = []rolloutapi.RunDetail{{Name: "web-v2-step-1", Metrics: []rolloutapi.MetricDetail{{Name: "success-rate",
		SuccessCondition: "result[0] >= 0.95", FailureCondition: "result[0] < 0.9", Phase: v1alpha1.AnalysisSuccessful, Measurements: ms}}}}
	ro.Detail.Rejected = []rolloutapi.RejectedCommit{{SHA: "fedcba9876543210fedcba9876543210fedcba98", At: tNow.Add(-5 * time.Minute),
		Problems: []string{"shop/web.yaml:14: spec.strategy.canary.steps[0].setWeight: 120 is more than 100"}}}
	st.GitRevert = &v1alpha1.GitRevertStatus{FailedRevision: "v0", StableRevision: "v1", Phase: v1alpha1.GitRevertDone,
		RequestedAt: metav1.NewTime(tNow.Add(-2 * time.Hour)), Attempts: 1, Commit: "abcdef0123456789abcdef0123456789abcdef01"}
	b := newMemBackend(ro)
	b.history["shop/web"] = []rolloutapi.Event{
		{Time: entered0, Type: "Normal", Reason: v1alpha1.ReasonStepAdvanced, Message: "step 1/4: setWeight 20"},
		{Time: entered1, Type: "Normal", Reason: v1alpha1.ReasonStepAdvanced, Message: "step 2/4: pause 1m0s"},
		{Time: entered1.Add(time.Second), Type: "Normal", Reason: "Note", Message: "the newest event"},
	}
	srv := serve(t, b, Options{})
	v := newViewer(t, srv)
	v.login(aliceSecret)
	_, page := v.get("rollouts/shop/web")

	for _, tc := range []struct{ part, want string }{
		{"finished step's duration", `took 30s`},
		{"current step's start", `started <time`},
		{"pause's time left", `50s left`},
		{"a bar per route, with its text", `<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label="`},
		{"a route's match in words", `end-user = jason`},
		{"proxies holding the plan", `<strong>1</strong> of <strong>3</strong> proxies hold this plan, 1 still on an earlier one, 1 rejected it.`},
		{"the ACK", `web-client-1`},
		{"the NACK with its error", `picky-proxy</code> rejected RouteConfiguration`},
		{"the NACK's text", `route default: weights sum to 99`},
		{"the stale proxy", `<code>old-proxy</code> <span class="badge ack-stale">stale</span> silent since`},
		{"the chart", `class="metric-chart"`},
		{"the success threshold", `class="threshold t-success"`},
		{"the failure threshold", `class="threshold t-failure"`},
		{"the run's verdict", `<span class="badge verdict-successful">Successful</span>`},
		{"a failed measurement", `class="point p-failed"`},
		{"the measurements as text", `<summary>Measurements as text</summary>`},
		{"a measurement as text", `<td>0.85</td><td>Failed</td>`},
		{"the forge link", `href="https://github.com/acme/deploy/commit/0123456789abcdef0123456789abcdef01234567"`},
		{"the author", `Dev &lt;dev@example.com&gt;`},
		{"the message", `id="commit-subject">web: v2</p>`},
		{"the rejected commit", `fedcba987654</code></a> rejected`},
		{"its problem", `shop/web.yaml:14: spec.strategy.canary.steps[0].setWeight: 120 is more than 100`},
		{"the revert", `Setting Git back from <code>v0</code> to <code>v1</code>: Done`},
		{"the revert commit's link", `href="https://github.com/acme/deploy/commit/abcdef0123456789abcdef0123456789abcdef01"`},
	} {
		if !strings.Contains(page, tc.want) {
			t.Errorf("%s: no %q on the page", tc.part, tc.want)
		}
	}
	events := regexp.MustCompile(`class="event-message">([^<]*)<`).FindAllStringSubmatch(page, -1)
	if len(events) != 3 || events[0][1] != "the newest event" || events[2][1] != "step 1/4: setWeight 20" {
		t.Errorf("events %q: want the three, newest first", events)
	}
	if t.Failed() {
		t.Logf("the page:\n%s", page)
	}
}
