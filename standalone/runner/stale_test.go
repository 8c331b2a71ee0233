package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/xds"
)

// Issue 13's stalling client, end to end: `sluice run`'s runner, a real
// xDS server, a proxyless grpc-go client that answers, and a raw ADS
// stream that subscribes and never answers. Status is read through the
// HTTP API, as `sluice status` reads it, and the metric through /metrics.
// The clock is the real one: the xDS server notes silence by it.

// ackDeadline is the Rollouts' spec.dataPlane.ackDeadlineSeconds.
const ackDeadline = time.Second

// silentSpec is the rest of the Rollouts' spec: the deadline, the
// policy, the steps.
const silentSpec = `  dataPlane:
    ackDeadlineSeconds: %d
    silentProxies: %s
  strategy:
    canary:
      steps:
%s`

// Steps of the Rollouts: the Exclude test's counts two weights in a row,
// the Hold test's stops for a promote between them.
const (
	excludeSteps = `      - setWeight: 20
      - setWeight: 60
      - pause: {}
`
	holdSteps = `      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {}
`
)

// silentEnv is a runner serving reviews over xDS, v1 stable, with one
// grpc-go client that ACKs (node "answering"); silence adds a raw ADS
// stream that never does (node "silent").
type silentEnv struct {
	f      *fixture
	policy v1alpha1.SilentProxyPolicy
	steps  string
	addr   string // the xDS server's
	srv    *xds.Server
	// api reads status as `sluice status` does.
	api     *rolloutapi.Client
	metrics string // the /metrics URL
	token   string
	canary  string // the v2 backend's address
	client  func(n int) map[string]int
}

func newSilentEnv(t *testing.T, policy v1alpha1.SilentProxyPolicy, steps string) *silentEnv {
	t.Helper()
	e := &silentEnv{f: newFixture(t), policy: policy, steps: steps}
	stable := xdstest.Backend(t, "127.0.0.1", "stable")
	e.canary = xdstest.Backend(t, "127.0.0.1", "canary")
	e.push("v1", stable)

	reg := prometheus.NewRegistry()
	eps := xds.NewStatic()
	var err error
	e.srv, err = xds.New(xds.Options{Endpoints: eps, Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = serveXDS(t, e.srv)
	planeCtx, stopPlane := context.WithCancel(context.Background())
	t.Cleanup(stopPlane)
	plane := NewXDSPlane(planeCtx, e.srv, eps)
	s := e.f.startWith(v1alpha1.AnalysisSuccessful, func(o *Options) {
		o.Plane, o.Registerer = plane, reg
	})

	secret, sum, err := rolloutapi.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := rolloutapi.ParseToken("http.tokens[0]", "alice", rolloutapi.RoleOperate, sum)
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(rolloutapi.NewHandler(s.r, rolloutapi.HandlerOptions{Tokens: []rolloutapi.Token{tok}}))
	t.Cleanup(apiSrv.Close)
	ops := httptest.NewServer(rolloutapi.NewOpsHandler(rolloutapi.OpsOptions{Tokens: []rolloutapi.Token{tok}, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}))
	t.Cleanup(ops.Close)
	e.api, e.metrics, e.token = &rolloutapi.Client{BaseURL: apiSrv.URL, Token: secret}, ops.URL+"/metrics", secret

	waitFor(t, e.api, "v1 stable and served", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" && ro.Plan != nil })
	c, _ := xdstest.Client(t, e.addr, "answering", "reviews")
	e.client = func(n int) map[string]int { return xdstest.Calls(t, c, n) }
	return e
}

func (e *silentEnv) push(version, addr string) {
	e.f.t.Helper()
	e.f.pushManifest(reviewsRollout(version, addr, fmt.Sprintf(silentSpec, int(ackDeadline/time.Second), e.policy, e.steps)), "ship "+version)
}

// silence connects the node that never answers; the function it returns
// disconnects it.
func (e *silentEnv) silence(t *testing.T) context.CancelFunc {
	t.Helper()
	return xdstest.SilentNode(t, e.addr, "silent", "reviews")
}

// staleMetric scrapes sluice_rollout_stale_nodes for default/reviews.
func (e *silentEnv) staleMetric(t *testing.T) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	const series = `sluice_rollout_stale_nodes{namespace="default",rollout="reviews"} `
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s%s: %v", series, v, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

// checkStale fails unless status reports exactly the silent node, with
// excluded as given, and the history has a StaleProxies event.
func (e *silentEnv) checkStale(t *testing.T, ro rolloutapi.Rollout, excluded bool) {
	t.Helper()
	sn := ro.Status.Traffic.StaleNodes
	if sn == nil || sn.Count != 1 || !slices.Equal(sn.Nodes, []string{"silent"}) || sn.Excluded != excluded {
		t.Errorf("status.traffic.staleNodes = %+v, want the silent node, excluded %v", sn, excluded)
	}
	if v := e.staleMetric(t); v != 1 {
		t.Errorf("sluice_rollout_stale_nodes = %v, want 1", v)
	}
	if rs := reasons(t, e.api); !strings.Contains(rs, v1alpha1.ReasonStaleProxies) {
		t.Errorf("history %s lacks %s", rs, v1alpha1.ReasonStaleProxies)
	}
}

// With Hold (the default), a node that joined during a pause and never
// answers keeps the next step waiting past the deadline, although the
// answering client applied it, and status says why; once the silent node
// goes away the rollout goes on.
func TestSilentProxyHoldsTheStep(t *testing.T) {
	t.Parallel()
	e := newSilentEnv(t, v1alpha1.SilentHold, holdSteps)
	e.push("v2", e.canary)
	waitFor(t, e.api, "the pause at 20%", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhasePaused && ro.Status.Traffic.CanaryWeight == 20
	})
	quiet := e.silence(t)
	ctx := context.Background()
	if resp, err := e.api.Command(ctx, "default", "reviews", rolloutapi.CommandRequest{Kind: v1alpha1.CommandPromote}); err != nil || resp.Refused {
		t.Fatalf("promote = %+v, %v", resp, err)
	}

	ro := waitFor(t, e.api, "the silent node reported stale at step 3", func(ro rolloutapi.Rollout) bool {
		i := ro.Status.CurrentStepIndex
		return i != nil && *i == 2 && ro.Status.Traffic.StaleNodes != nil
	})
	e.checkStale(t, ro, false)
	// Well past the deadline, and after the answering client applied the
	// plan, the step still waits, and says why.
	poll.Until(t, "the answering client applied 60%", func() bool {
		return e.srv.Status(xds.ServiceKey("default", "reviews"), ro.Status.Traffic.PlanVersion).Acked == 1
	})
	time.Sleep(2 * ackDeadline)
	ro, err := e.api.Get(ctx, "default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	if i := ro.Status.CurrentStepIndex; i == nil || *i != 2 || ro.Status.StepAcknowledgedAt != nil {
		t.Fatalf("step %v, acknowledged at %v: want step 3 (setWeight 60) held", i, ro.Status.StepAcknowledgedAt)
	}
	c := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionProgressing)
	if c == nil || c.Reason != v1alpha1.ReasonStaleProxies || !strings.Contains(c.Message, "silent") || !strings.Contains(ro.Status.Message, "silent") {
		t.Errorf("Progressing %+v, message %q: want %s naming the silent node", c, ro.Status.Message, v1alpha1.ReasonStaleProxies)
	}
	e.checkStale(t, ro, false)

	quiet()
	ro = waitFor(t, e.api, "the rollout going on without the silent node", func(ro rolloutapi.Rollout) bool {
		i := ro.Status.CurrentStepIndex
		return i != nil && *i == 3 && ro.Status.Phase == v1alpha1.PhasePaused
	})
	if ro.Status.Traffic.StaleNodes != nil || ro.Status.Traffic.CanaryWeight != 60 {
		t.Errorf("staleNodes %+v, weight %d after the silent node left; want none, 60", ro.Status.Traffic.StaleNodes, ro.Status.Traffic.CanaryWeight)
	}
	if v := e.staleMetric(t); v != 0 {
		t.Errorf("sluice_rollout_stale_nodes = %v after the silent node left, want 0", v)
	}
}

// With Exclude, a node that never answers, there from the start, is left
// out of the count once past the deadline: each step counts when the
// answering client applied it, and the silent node stays reported.
func TestSilentProxyExcluded(t *testing.T) {
	t.Parallel()
	e := newSilentEnv(t, v1alpha1.SilentExclude, excludeSteps)
	e.silence(t)
	pushed := time.Now()
	e.push("v2", e.canary)

	ro := waitFor(t, e.api, "both steps counted without the silent node", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhasePaused && ro.Status.Traffic.CanaryWeight == 60
	})
	t.Logf("two setWeight steps took %s", time.Since(pushed).Round(time.Millisecond))
	if i := ro.Status.CurrentStepIndex; i == nil || *i != 2 {
		t.Fatalf("step %v, want 3 (the pause)", i)
	}
	e.checkStale(t, ro, true)
	poll.Until(t, "the answering client routing to the canary", func() bool { return e.client(50)["canary"] > 0 })
}

// serveXDS runs srv on a loopback port until the test ends.
func serveXDS(tb testing.TB, srv *xds.Server) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("xDS Serve: %v", err)
		}
	})
	return lis.Addr().String()
}
