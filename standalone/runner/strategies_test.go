package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// Each strategy seen by real clients (issue 14): `sluice run`'s parts
// wired in the test (stratWorld), grpc-go's own xDS clients sending real
// RPCs to real backends, and a real Prometheus judging them.

// stratAt reports whether the rollout runs the step labelled label (as
// the API names steps) and the data plane has acknowledged its traffic.
func stratAt(ro rolloutapi.Rollout, label string) bool {
	i := ro.Status.CurrentStepIndex
	return ro.Status.CanaryRevision != "" && i != nil && int(*i) < len(ro.Steps) &&
		ro.Steps[*i] == label && ro.Status.StepAcknowledgedAt != nil
}

// stratOnly fails unless every one of the n calls was answered by version.
func stratOnly(t *testing.T, what string, counts map[string]int, n int, version string) {
	t.Helper()
	if counts[version] != n || len(counts) != 1 {
		t.Errorf("%s: served by %v, want all %d by %s", what, counts, n, version)
	}
}

// stratCalls waits until the load generator made at least n calls since
// from, so that a window judged has calls to judge.
func stratCalls(t *testing.T, l *grpcecho.Load, from time.Time, n int) {
	t.Helper()
	poll.Within(t, 15*time.Second, "load generator calls", func() bool { return l.Window(from, time.Now()).Total >= n })
}

// stratNoFailures fails if a call of the split failed, whatever answered.
func stratNoFailures(t *testing.T, what string, s grpcecho.Split) {
	t.Helper()
	failed := 0
	for _, n := range s.Failed {
		failed += n
	}
	if failed > 0 || s.Calls[""] > 0 {
		t.Errorf("%s: %d of %d calls failed (%v), %d unanswered; want none:%s", what, failed, s.Total, s.Failed, s.Calls[""], stratErrors(s.Errors))
	}
}

// stratErrors lists call errors, one a line.
func stratErrors(errs []grpcecho.CallError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n\t" + e.String())
	}
	return b.String()
}

// stratWaitAll waits until every call of the load generator goes to version.
func stratWaitAll(t *testing.T, l *grpcecho.Load, version string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	at, err := l.WaitFor(ctx, version, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// stratSettle waits until every call of the load generator goes to
// version, keeps it running half a second more, fails unless all of those
// calls went to version, and returns every call since start.
func stratSettle(t *testing.T, l *grpcecho.Load, version string, start time.Time) grpcecho.Split {
	t.Helper()
	from := stratWaitAll(t, l, version)
	time.Sleep(500 * time.Millisecond)
	if s := l.Window(from, time.Now()); s.Total == 0 || s.Calls[version] != s.Total || len(s.Failed) > 0 {
		t.Errorf("after all calls went to %s: %s, failed %v:%s", version, s, s.Failed, stratErrors(s.Errors))
	}
	return l.Window(start, time.Now())
}

const stratBlueGreen = `  strategy:
    blueGreen:
      preview:
        hosts: [preview.reviews]
        match:
        - headers: [{name: x-preview, exact: "yes"}]
      prePromotionAnalysis:
        templates: [{name: error-ratio}]
      postPromotionAnalysis:
        templates: [{name: error-ratio}]
`

// Blue/green: the preview is reached by the preview match and the preview
// host and by nothing else; pre-promotion analysis judges the preview
// traffic in Prometheus; promote switches everyone at once, with no
// failed call across the switch and the promotion after it.
func TestStrategyBlueGreenSwitch(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	mark := func(what string) { t.Logf("+%s %s", time.Since(t0).Round(time.Millisecond), what) }
	v1, v2 := stratBackend(t, "v1", 0), stratBackend(t, "v2", 0)
	promURL, scraped := stratPrometheus(t, v1, v2)
	w := stratStart(t, promURL, stratBlueGreen, v1)
	client := w.client()
	load := w.load("load", "reviews", 200)
	start := time.Now()
	scraped()
	mark("prometheus has the backends")

	w.ship(v2)
	ro := waitFor(t, w.r, "preview live", func(ro rolloutapi.Rollout) bool { return stratAt(ro, "pre-promotion analysis error-ratio") })
	if !slices.Contains(ro.Status.Traffic.Routes, "preview") || ro.Status.Traffic.CanaryWeight != 0 {
		t.Fatalf("preview traffic: routes %v, canary weight %d", ro.Status.Traffic.Routes, ro.Status.Traffic.CanaryWeight)
	}
	mark("preview live")
	preview, _ := xdstest.Client(t, w.xds, "previewer", "preview.reviews")
	stratOnly(t, "preview host", xdstest.Calls(t, preview, 200), 200, "v2")
	stratOnly(t, "preview header", xdstest.Calls(t, client, 200, "x-preview", "yes"), 200, "v2")
	stratOnly(t, "other header value", xdstest.Calls(t, client, 200, "x-preview", "no"), 200, "v1")
	stratOnly(t, "no header", xdstest.Calls(t, client, 200), 200, "v1")
	// What the analysis judges: the preview's own traffic.
	previewLoad := w.load("preview-load", "preview.reviews", 50)

	ro = waitFor(t, w.r, "pre-promotion analysis passed", func(ro rolloutapi.Rollout) bool { return stratAt(ro, "pause until promote") })
	mark("pre-promotion analysis passed")
	if ro.Status.Phase != v1alpha1.PhasePaused || ro.Status.Traffic.CanaryWeight != 0 {
		t.Fatalf("before promote: phase %s, canary weight %d", ro.Status.Phase, ro.Status.Traffic.CanaryWeight)
	}
	if h := stratHistory(t, w); !strings.Contains(h, "-pre succeeded") {
		t.Fatalf("history lacks the pre-promotion run's success:\n%s", h)
	}
	// The preview load starts its own xDS client: on a loaded machine the
	// analysis can pass before it made a call (the calls above are enough
	// for it). Give it calls to judge before the switch.
	stratCalls(t, previewLoad, start, 20)
	switchAt := time.Now()
	if s := load.Window(start, switchAt); s.Calls["v2"] != 0 || s.Total < 50 {
		t.Errorf("before the switch unmatched calls saw %s (%d calls); the preview must get none", s, s.Total)
	}
	if s := previewLoad.Window(start, switchAt); s.Calls["v2"] == 0 || s.Calls["v2"] != s.Total {
		t.Errorf("preview load saw %s, want only v2", s)
	}
	previewLoad.Stop()

	w.command(v1alpha1.CommandPromote)
	ro = waitFor(t, w.r, "switched", func(ro rolloutapi.Rollout) bool { return stratAt(ro, "post-promotion analysis error-ratio") })
	if ro.Status.Traffic.CanaryWeight != 100 || ro.Plan.Hosts[0].Weight(plan.Canary) != 100 {
		t.Fatalf("after the switch: canary weight %d", ro.Status.Traffic.CanaryWeight)
	}
	mark("switched")
	switched := stratWaitAll(t, load, "v2")
	ro = w.waitPromoted()
	mark("promoted")
	if ro.Status.Phase != v1alpha1.PhaseHealthy || len(ro.Plan.Subsets) != 1 || ro.Plan.Revision(plan.Stable) != "v2" {
		t.Fatalf("after promotion: phase %s, plan %+v", ro.Status.Phase, ro.Plan)
	}
	if h := stratHistory(t, w); !strings.Contains(h, "-post succeeded") {
		t.Fatalf("history lacks the post-promotion run's success:\n%s", h)
	}
	// Calls after the old revision left the configuration count too.
	all := stratSettle(t, load, "v2", start)
	t.Logf("switch: all calls on v2 %s after promote; over the rollout %d calls: %s", switched.Sub(switchAt).Round(time.Millisecond), all.Total, all)
	stratNoFailures(t, "across the switch and the promotion", all)
}

// Blue/green: post-promotion analysis fails, and the rollout switches
// back to the old revision, which was kept running and routable through
// the switch (its cluster stays in every client's configuration until
// promotion ends): no call fails on the way back.
func TestStrategyBlueGreenPostPromotionFailure(t *testing.T) {
	t.Parallel()
	// v2 fails a fifth of its calls: invisible without traffic, plain
	// under the full load after the switch.
	v1, v2 := stratBackend(t, "v1", 0), stratBackend(t, "v2", 20)
	spec := `  strategy:
    blueGreen:
      preview:
        match:
        - headers: [{name: x-preview, exact: "yes"}]
      autoPromotionSeconds: 1
      postPromotionAnalysis:
        templates: [{name: error-ratio}]
`
	promURL, scraped := stratPrometheus(t, v1, v2)
	w := stratStart(t, promURL, spec, v1)
	load := w.load("load", "reviews", 200)
	start := time.Now()
	scraped()

	w.ship(v2)
	waitFor(t, w.r, "switched", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Abort != nil || (stratAt(ro, "post-promotion analysis error-ratio") && ro.Status.Traffic.CanaryWeight == 100)
	})
	ro := waitFor(t, w.r, "abort", func(ro rolloutapi.Rollout) bool { return ro.Status.Abort != nil })
	if a := ro.Status.Abort; a.Reason != v1alpha1.ReasonAnalysisFailed || !a.Automatic || !strings.Contains(a.Message, "-post") ||
		!strings.Contains(a.Message, "failureLimit") {
		t.Fatalf("abort = %+v, want the post-promotion analysis' failure", a)
	}
	if ro.Status.Phase != v1alpha1.PhaseDegraded || ro.Status.StableRevision != "v1" || ro.Plan.Hosts[0].Weight(plan.Stable) != 100 ||
		ro.Plan.Revision(plan.Stable) != "v1" {
		t.Fatalf("after the abort: phase %s, stable %s, plan %+v", ro.Status.Phase, ro.Status.StableRevision, ro.Plan)
	}
	all := stratSettle(t, load, "v1", start)
	t.Logf("over the rollout: %s, failed %v", all, all.Failed)
	if all.Calls["v2"] < 20 || all.Failed["v2"] == 0 {
		t.Errorf("v2 answered %d calls (%d failed): the switch never reached the load", all.Calls["v2"], all.Failed["v2"])
	}
	// The only failures are v2's own; v1 took its traffic back at once.
	if all.Failed["v1"] != 0 || all.Calls[""] != 0 {
		t.Errorf("v1 failed %d calls and %d went unanswered across the switch back:%s", all.Failed["v1"], all.Calls[""],
			stratErrors(append(all.ErrorsOf("v1"), all.ErrorsOf("")...)))
	}
}

// Dark release, by header and by cookie (gRPC sends cookies as "cookie"
// metadata): while dark, only matching requests reach the new revision;
// unmatched ones (a load generator running from before the push to the
// end of the dark phase) never do. Then promotion: by header through the
// canary steps given (promote, 50%, promote), by cookie straight to 100%
// once the dark phase's least duration has passed on the runner's clock.
func TestStrategyDarkRelease(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, spec, darkStep string
		v2, v1               [][]string // metadata of calls that must reach v2, v1
		promote              func(t *testing.T, w *stratWorld, client grpc_testing.TestServiceClient)
	}{{
		name: "header",
		spec: `  strategy:
    darkRelease:
      match:
      - headers: [{name: x-canary, exact: "true"}]
      steps:
      - setWeight: 50
      - pause: {}
`,
		darkStep: "pause until promote",
		v2:       [][]string{{"x-canary", "true"}},
		v1:       [][]string{{"x-canary", "false"}, {"x-canary", "TRUE"}},
		promote: func(t *testing.T, w *stratWorld, client grpc_testing.TestServiceClient) {
			w.command(v1alpha1.CommandPromote)
			waitFor(t, w.r, "50%", func(ro rolloutapi.Rollout) bool {
				return stratAt(ro, "pause until promote") && *ro.Status.CurrentStepIndex == 3
			})
			const n = 1000
			stratShare(t, xdstest.Calls(t, client, n), n, "v2", "v1", 50)
			// The dark route stays until promotion.
			stratOnly(t, "matching header at 50%", xdstest.Calls(t, client, 200, "x-canary", "true"), 200, "v2")
			w.command(v1alpha1.CommandPromote)
		},
	}, {
		name: "cookie",
		spec: `  strategy:
    darkRelease:
      match:
      - cookies: [{name: canary, value: always}]
      duration: 1h
`,
		darkStep: "pause 1h0m0s",
		v2:       [][]string{{"cookie", "canary=always"}, {"cookie", "session=abc; canary=always; theme=dark"}},
		v1:       [][]string{{"cookie", "canary=never"}, {"cookie", "notcanary=always"}, {"cookie", "canary=alwaysnot"}},
		promote: func(t *testing.T, w *stratWorld, _ grpc_testing.TestServiceClient) {
			if ro := w.get(); !stratAt(ro, "pause 1h0m0s") {
				t.Fatalf("the dark phase ended before its duration: step %v of %v", ro.Status.CurrentStepIndex, ro.Steps)
			}
			w.clock.advance(time.Hour)
			w.r.poke()
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v1, v2 := stratBackend(t, "v1", 0), stratBackend(t, "v2", 0)
			w := stratStart(t, "", c.spec, v1)
			client := w.client()
			load := w.load("load", "reviews", 200)
			start := time.Now()

			w.ship(v2)
			ro := waitFor(t, w.r, "dark", func(ro rolloutapi.Rollout) bool {
				return stratAt(ro, c.darkStep) && *ro.Status.CurrentStepIndex == 1
			})
			dark := time.Now()
			if !slices.Contains(ro.Status.Traffic.Routes, "dark") || ro.Status.Traffic.CanaryWeight != 0 {
				t.Fatalf("dark traffic: routes %v, canary weight %d", ro.Status.Traffic.Routes, ro.Status.Traffic.CanaryWeight)
			}
			// A client ACKs before its channel switches configuration.
			poll.Within(t, 10*time.Second, "the dark route in force in the client", func() bool {
				return xdstest.Calls(t, client, 20, c.v2[0]...)["v2"] == 20
			})
			for _, md := range c.v2 {
				stratOnly(t, fmt.Sprint(md), xdstest.Calls(t, client, 100, md...), 100, "v2")
			}
			for _, md := range append(c.v1, nil) {
				stratOnly(t, fmt.Sprint(md), xdstest.Calls(t, client, 100, md...), 100, "v1")
			}
			stratCalls(t, load, dark, 200)
			if s := load.Window(start, time.Now()); s.Calls["v2"] != 0 {
				t.Errorf("unmatched calls while dark: %s (%d calls), want none on v2", s, s.Total)
			}

			c.promote(t, w, client)
			w.waitPromoted()
			stratOnly(t, "after promotion", xdstest.Calls(t, client, 200), 200, "v2")
			stratNoFailures(t, "unmatched load over the release", stratSettle(t, load, "v2", start))
		})
	}
}

// Mirroring is Envoy's: the Envoy group gets the mirror policy (the
// canary's cluster, the percent as runtime_fraction), the gRPC group
// gets none, and a proxyless client's calls are not copied to the canary.
func TestStrategyMirrorEnvoyOnly(t *testing.T) {
	t.Parallel()
	v1, v2 := stratBackend(t, "v1", 0), stratBackend(t, "v2", 0)
	spec := `  strategy:
    canary:
      steps:
      - setWeight: 20
      - setMirror: {percent: 30}
      - pause: {}
`
	w := stratStart(t, "", spec, v1)
	client := w.client()

	w.ship(v2)
	ro := waitFor(t, w.r, "mirroring", func(ro rolloutapi.Rollout) bool { return stratAt(ro, "pause until promote") })
	if tr := ro.Status.Traffic; tr.MirrorPercent != 30 || tr.CanaryWeight != 20 {
		t.Fatalf("traffic status: mirror %d%%, canary weight %d", tr.MirrorPercent, tr.CanaryWeight)
	}

	envoy := stratEnvoyADS(t, w.xds, "sidecar")
	rc := envoy.routeConfig("9080", func(rc *routev3.RouteConfiguration) bool { return stratRoute(rc, "reviews", "primary") != nil })
	primary := stratRoute(rc, "reviews", "primary")
	if got := stratWeights(primary); !slices.Equal(got, []string{"default/reviews|v1=80", "default/reviews|v2=20"}) {
		t.Errorf("envoy primary route weights %v", got)
	}
	mp := primary.GetRoute().GetRequestMirrorPolicies()
	if len(mp) != 1 || mp[0].GetCluster() != "default/reviews|v2" {
		t.Fatalf("envoy mirror policies %v, want one to reviews|v2", mp)
	}
	if f := mp[0].GetRuntimeFraction().GetDefaultValue(); f.GetNumerator() != 30 || f.GetDenominator() != typev3.FractionalPercent_HUNDRED {
		t.Errorf("envoy mirror runtime_fraction = %v, want 30/HUNDRED", f)
	}
	if eps := envoy.endpoints("default/reviews|v2"); !slices.Equal(eps, []string{v2.Addr}) {
		t.Errorf("envoy endpoints of the mirror cluster = %v, want [%s]", eps, v2.Addr)
	}

	proxyless := stratGRPCADS(t, w.xds, "grpc-raw", "reviews", nil)
	rc = proxyless.routeConfig("reviews", func(rc *routev3.RouteConfiguration) bool { return stratRoute(rc, "reviews", "primary") != nil })
	if got := stratWeights(stratRoute(rc, "reviews", "primary")); !slices.Equal(got, []string{"default/reviews|v1=80", "default/reviews|v2=20"}) {
		t.Errorf("gRPC primary route weights %v", got)
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if len(r.GetRoute().GetRequestMirrorPolicies()) > 0 {
				t.Errorf("gRPC route %s carries a mirror policy: %v", r.GetName(), r.GetRoute().GetRequestMirrorPolicies())
			}
		}
	}

	// A proxyless client's calls reach v2 only when routed there.
	const n = 1000
	before := v2.Calls()
	counts := xdstest.Calls(t, client, n)
	stratShare(t, counts, n, "v2", "v1", 20)
	if got := v2.Calls() - before; got != uint64(counts["v2"]) {
		t.Errorf("v2 answered %d calls, %d of them routed to it: proxyless calls were mirrored", got, counts["v2"])
	}
}

// stratNack is what the NACKing client says: escapes, a forged line, a
// bidi override, and far more than the 1 KiB Sluice keeps.
var stratNack = "route rejected: \x1b[31mboom\x1b[0m\nlevel=info msg=\"forged\"\u202e" + strings.Repeat("x", 3000)

// A client that NACKs the plan routing to the new revision stops the
// rollout as spec.rollback.onNack says, with its error, bounded and
// escaped, in status; real clients keep being served by the stable
// revision.
func TestStrategyNackStopsRollout(t *testing.T) {
	t.Parallel()
	for _, onNack := range []v1alpha1.FailureAction{v1alpha1.ActionAbort, v1alpha1.ActionPause} {
		t.Run(string(onNack), func(t *testing.T) {
			t.Parallel()
			v1, v2 := stratBackend(t, "v1", 0), stratBackend(t, "v2", 0)
			spec := `  rollback: {onNack: ` + string(onNack) + `}
  strategy:
    canary:
      steps:
      - setWeight: 50
      - pause: {}
`
			w := stratStart(t, "", spec, v1)
			client := w.client()
			// The rejecting client refuses any listener that names v2's
			// cluster, as a proxy would a route it cannot apply.
			nacker := stratGRPCADS(t, w.xds, "nacker", "reviews", func(typ string, res []*anypb.Any) string {
				if typ == resource.ListenerType && slices.Contains(stratRefs(typ, res)[resource.ClusterType], "default/reviews|v2") {
					return stratNack
				}
				return ""
			})
			nacker.routeConfig("reviews", func(rc *routev3.RouteConfiguration) bool { return stratRoute(rc, "reviews", "primary") != nil })

			w.ship(v2)
			var ro rolloutapi.Rollout
			if onNack == v1alpha1.ActionAbort {
				ro = waitFor(t, w.r, "abort", func(ro rolloutapi.Rollout) bool { return ro.Status.Abort != nil })
				a := ro.Status.Abort
				if a.Reason != v1alpha1.ReasonNack || !a.Automatic || ro.Status.Phase != v1alpha1.PhaseDegraded {
					t.Fatalf("phase %s, abort %+v; want an automatic abort for the NACK", ro.Status.Phase, a)
				}
				stratCheckNack(t, "status.abort.message", a.Message)
				ro = waitFor(t, w.r, "stable plan acknowledged", func(ro rolloutapi.Rollout) bool {
					return ro.Status.Traffic.AcknowledgedVersion == ro.Status.Traffic.PlanVersion
				})
				if len(ro.Plan.Subsets) != 1 || ro.Plan.Revision(plan.Stable) != "v1" || ro.Status.Traffic.CanaryWeight != 0 {
					t.Errorf("after the abort: plan %+v", ro.Plan)
				}
			} else {
				ro = waitFor(t, w.r, "pause", func(ro rolloutapi.Rollout) bool { return ro.Status.Pause != nil })
				if p := ro.Status.Pause; p.Reason != v1alpha1.ReasonNack || ro.Status.Phase != v1alpha1.PhasePaused || ro.Status.Abort != nil {
					t.Fatalf("phase %s, pause %+v, abort %+v; want a pause for the NACK", ro.Status.Phase, p, ro.Status.Abort)
				}
				tr := ro.Status.Traffic
				if tr.RejectedVersion == "" || tr.RejectedVersion != tr.PlanVersion || tr.CanaryWeight != 0 {
					t.Errorf("traffic %+v: want the plan in force rejected, at 0%% canary", tr)
				}
				stratCheckNack(t, "status.traffic.rejection", tr.Rejection)
				stratCheckNack(t, "status.pause.message", ro.Status.Pause.Message)
				if len(tr.Rejection) > 1024 || !strings.HasSuffix(tr.Rejection, "…") {
					t.Errorf("rejection is %d bytes, want it cut to at most 1024 with an ellipsis", len(tr.Rejection))
				}
			}
			if len(nacker.rejections()) == 0 {
				t.Fatal("the client never NACKed")
			}
			if h := stratHistory(t, w); !strings.Contains(h, v1alpha1.ReasonNack) {
				t.Errorf("history lacks %s:\n%s", v1alpha1.ReasonNack, h)
			}
			// The new revision never got a call: the refused plan gave it
			// none, and the weight step never came.
			if i := ro.Status.CurrentStepIndex; i != nil && *i > 0 {
				t.Errorf("current step %d: the rollout went on past the rejected plan", *i)
			}
			stratOnly(t, "real client after the NACK", xdstest.Calls(t, client, 200), 200, "v1")
			if n := v2.Calls(); n != 0 {
				t.Errorf("v2 answered %d calls", n)
			}
		})
	}
}

// stratCheckNack fails unless s holds the client's text escaped: the
// escapes written out, no control character left.
func stratCheckNack(t *testing.T, what, s string) {
	t.Helper()
	stratClean(t, what, s)
	for _, want := range []string{`route rejected: \x1b[31mboom\x1b[0m\nlevel=info msg="forged"\u202e`, "xxxx"} {
		if !strings.Contains(s, want) {
			t.Errorf("%s = %.200q…, want it to contain %q", what, s, want)
		}
	}
}

// stratHistory is the rollout's history, one "reason: message" a line.
func stratHistory(t *testing.T, w *stratWorld) string {
	t.Helper()
	hist, err := w.r.History(context.Background(), "default", "reviews", 200)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range hist {
		b.WriteString(e.Reason + ": " + e.Message + "\n")
	}
	return b.String()
}
