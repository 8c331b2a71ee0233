package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// serve runs srv on a loopback port until the test ends.
func serve(t testing.TB, srv *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// env is a Sluice xDS server with the reviews service's two revisions
// running as real backends: stable (v1) and canary (v2).
type env struct {
	srv  *Server
	addr string
	eps  *Static
	reg  *prometheus.Registry
	// backend addresses
	stable, canary string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{eps: NewStatic(), reg: prometheus.NewRegistry()}
	e.stable, e.canary = xdstest.Backend(t, "127.0.0.1", "stable"), xdstest.Backend(t, "127.0.0.1", "canary")
	must(t, e.eps.Set("", "reviews", revStable, e.stable))
	must(t, e.eps.Set("", "reviews", revCanary, e.canary))
	var err error
	e.srv, err = New(Options{Endpoints: e.eps, Registerer: e.reg, Logger: quiet})
	must(t, err)
	e.addr = serve(t, e.srv)
	return e
}

// client is a proxyless gRPC client of xds:///target whose bootstrap
// points at the env's server (xdstest.Client).
func (e *env) client(t *testing.T, nodeID, target string) (grpc_testing.TestServiceClient, *grpc.ClientConn) {
	t.Helper()
	return xdstest.Client(t, e.addr, nodeID, target)
}

func (e *env) publish(t *testing.T, plans ...plan.Plan) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, e.srv.Publish(ctx, plans))
}

// waitAck waits until every subscribed node applied p.
func (e *env) waitAck(t *testing.T, p plan.Plan) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := e.srv.Wait(ctx, PlanKey(&p), p.Version)
	if err != nil {
		t.Fatalf("Wait(%s): %v (status %+v)", p.Version, err, st)
	}
	return st
}

// setHook installs the test hook between publishes.
func (e *env) setHook(f func(Group, *GroupResources)) {
	e.srv.pub.Lock()
	defer e.srv.pub.Unlock()
	e.srv.hook = f
}

func TestGRPCWeightedSplit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	e.publish(t, p)
	c, _ := e.client(t, "weights", "reviews")
	e.waitAck(t, p)
	// One check: a correct split fails it once in a million runs (a 99%
	// interval failed one run in a hundred), and 4000 RPCs still reject 10%
	// or 2.5% served for 5%; see binomial's TestIntervalCatchesWrongSplits.
	const n = 4000
	xdstest.CheckShare(t, xdstest.Calls(t, c, n), n, 5, 1)
}

func TestGRPCHeaderRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := canaryPlan("reviews", 10, []string{"reviews"},
		toCanary("header-jason", header("end-user", plan.HeaderExact, "jason")))
	e.publish(t, p)
	// The target with a port selects the reviews:9080 listener.
	c, _ := e.client(t, "header", "reviews:9080")
	e.waitAck(t, p)
	if got := xdstest.Calls(t, c, 500, "end-user", "jason"); got["canary"] != 500 {
		t.Errorf("end-user: jason served by %v, want all 500 by canary", got)
	}
	const n = 2000
	xdstest.CheckShare(t, xdstest.Calls(t, c, n, "end-user", "jasonx"), n, 10, 1)
}

func TestGRPCWeightChangesWithoutRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := canaryPlan("reviews", 0, []string{"reviews"})
	e.publish(t, p)
	c, _ := e.client(t, "changes", "reviews")
	e.waitAck(t, p)

	// Load runs through every change; not one RPC may fail.
	var failures, served atomic.Int64
	var firstErr atomic.Value
	stop := repeat(4, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
		cancel()
		if err != nil {
			failures.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
		served.Add(1)
	})
	for _, w := range []int32{5, 50, 100, 0} {
		p = canaryPlan("reviews", w, []string{"reviews"})
		t.Logf("step %d%%", w)
		e.publish(t, p)
		e.waitAck(t, p)
		switch w {
		case 0, 100:
			want := map[int32]string{0: "stable", 100: "canary"}[w]
			// The client ACKs before its channel switches configuration;
			// give the switch a moment, then every RPC must agree.
			poll.Within(t, 10*time.Second, "all calls served by "+want, func() bool { return xdstest.Calls(t, c, 50)[want] == 50 })
			if got := xdstest.Calls(t, c, 500); got[want] != 500 {
				t.Errorf("at %d%%: served by %v, want all by %s", w, got, want)
			}
		default:
			xdstest.Calls(t, c, 200) // let the channel switch
			const n = 1000
			xdstest.CheckShare(t, xdstest.Calls(t, c, n), n, w, 2) // at 5% and 50%
		}
	}
	stop()
	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d background RPCs failed during the changes; first: %v", f, served.Load(), firstErr.Load())
	}
	if served.Load() == 0 {
		t.Error("no background RPCs ran")
	}
}

func TestGRPCFaultInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	faultRoute := func(value string, f plan.Fault) plan.Route {
		return plan.Route{
			Name:         "fault-" + value,
			Match:        []plan.Match{header("x-fault", plan.HeaderExact, value)},
			Destinations: split(0),
			Policy:       &plan.Policy{Fault: &f},
		}
	}
	const delay = 300 * time.Millisecond
	p := canaryPlan("reviews", 0, []string{"reviews"},
		faultRoute("grpc", plan.Fault{Abort: &plan.FaultAbort{GRPCStatus: int32(codes.ResourceExhausted), Percent: 100}}),
		faultRoute("http", plan.Fault{Abort: &plan.FaultAbort{HTTPStatus: 503, Percent: 100}}),
		faultRoute("delay", plan.Fault{Delay: &plan.FaultDelay{Delay: delay, Percent: 100}}),
	)
	e.publish(t, p)
	c, _ := e.client(t, "fault", "reviews")
	e.waitAck(t, p)
	tests := []struct {
		value string
		want  codes.Code
	}{
		{"grpc", codes.ResourceExhausted},
		{"http", codes.Unavailable}, // HTTP 503 maps to UNAVAILABLE
		{"delay", codes.OK},
		{"other", codes.OK},
		{"", codes.OK},
	}
	for _, tc := range tests {
		t.Run("x-fault="+tc.value, func(t *testing.T) {
			for range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if tc.value != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "x-fault", tc.value)
				}
				start := time.Now()
				r, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
				took := time.Since(start)
				cancel()
				if got := status.Code(err); got != tc.want {
					t.Fatalf("status %v (%v), want %v", got, err, tc.want)
				}
				if err == nil && r.GetHostname() != "stable" {
					t.Fatalf("served by %q, want stable", r.GetHostname())
				}
				if tc.value == "delay" && took < delay {
					t.Fatalf("delayed RPC took %s, less than the injected %s", took, delay)
				}
			}
		})
	}
}

// corruptRegex gives the first route of a gRPC API listener a header
// matcher whose regex does not compile. Validate() accepts it (it only
// checks the length), gRPC rejects it.
func corruptRegex(t *testing.T, l *listenerv3.Listener) {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	must(t, l.GetApiListener().GetApiListener().UnmarshalTo(hcm))
	r := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
	r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
		Name: "x-broken",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}},
		}},
	})
	a, err := pack(hcm)
	must(t, err)
	l.ApiListener.ApiListener = a
}

func TestAckAndNackTracking(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var plans []plan.Plan
	for _, w := range []int32{5, 25} {
		plans = append(plans, canaryPlan("reviews", w, []string{"reviews"}))
	}
	e.publish(t, plans[0])
	c, _ := e.client(t, "acker", "reviews")
	for i, p := range plans {
		if i > 0 {
			e.publish(t, p)
		}
		st := e.waitAck(t, p)
		if st.Subscribed != 1 || st.Acked != 1 || len(st.Pending) != 0 || len(st.Rejected) != 0 || !st.Current {
			t.Errorf("plan %d: status %+v, want 1 subscribed node that ACKed the current version", i, st)
		}
		if dp := st.DataPlane(); dp.State != engine.AckAcknowledged || dp.Version != p.Version {
			t.Errorf("plan %d: data plane %+v", i, dp)
		}
	}
	if st := e.srv.Status("reviews", plans[0].Version); st.Current || !st.Published {
		t.Errorf("superseded version: %+v, want published, not current", st)
	}

	e.setHook(func(g Group, r *GroupResources) {
		if g != GroupGRPC {
			return
		}
		for _, l := range r.Listeners {
			if l.GetName() == "reviews" {
				corruptRegex(t, l)
			}
		}
	})
	bad := canaryPlan("reviews", 60, []string{"reviews"})
	e.publish(t, bad)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := e.srv.Wait(ctx, "reviews", bad.Version)
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("Wait for the invalid plan: %v, want a rejection", err)
	}
	if len(st.Rejected) != 1 || st.Rejected[0].Node.ID != "acker" || st.Rejected[0].TypeURL != kindURL[kindListener] ||
		!strings.Contains(st.Rejected[0].Message, "unclosed") {
		t.Errorf("rejections %+v, want one listener NACK from acker naming the bad regex", st.Rejected)
	}
	if dp := st.DataPlane(); dp.State != engine.AckRejected || !strings.Contains(dp.Message, "unclosed") {
		t.Errorf("data plane %+v, want Rejected with the NACK text", dp)
	}
	if n := testutil.ToFloat64(e.srv.metrics.nacksBy[GroupGRPC][kindListener]); n < 1 {
		t.Errorf("nacks_total{grpc,listener} = %v", n)
	}
	// The client kept its last good routing.
	if got := xdstest.Calls(t, c, 10); got["stable"]+got["canary"] != 10 {
		t.Errorf("after the NACK: %v", got)
	}

	e.setHook(nil)
	good := canaryPlan("reviews", 70, []string{"reviews"})
	e.publish(t, good)
	if st := e.waitAck(t, good); len(st.Rejected) != 0 {
		t.Errorf("after a good plan the rejection remains: %+v", st.Rejected)
	}
	if n := testutil.ToFloat64(e.srv.metrics.connectedBy[GroupGRPC]); n != 1 {
		t.Errorf("connected_nodes{grpc} = %v, want 1", n)
	}
	if n := histogramCount(t, e.reg, "sluice_xds_push_ack_seconds"); n == 0 {
		t.Error("push_ack_seconds recorded no ACK")
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

func TestLateJoinerAndDisconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := canaryPlan("reviews", 100, []string{"reviews"})
	e.publish(t, p)
	// Both clients connect after the publish and must get it.
	a, _ := e.client(t, "a", "reviews")
	b, ccB := e.client(t, "b", "reviews")
	for name, c := range map[string]grpc_testing.TestServiceClient{"a": a, "b": b} {
		if got := xdstest.Calls(t, c, 20); got["canary"] != 20 {
			t.Errorf("late joiner %s served by %v, want canary", name, got)
		}
	}
	// The keep-warm route gives stable weight but must never match, not
	// even for a request carrying its header.
	if got := xdstest.Calls(t, a, 200, "x-sluice-keep-warm", "1"); got["canary"] != 200 {
		t.Errorf("with the keep-warm header: served by %v, want all by canary", got)
	}
	if st := e.waitAck(t, p); st.Subscribed != 2 || st.Acked != 2 {
		t.Errorf("status %+v, want 2 subscribed and ACKed", st)
	}
	nodes := e.srv.Nodes()
	if len(nodes) != 2 || nodes[0].Node.Group != GroupGRPC {
		t.Fatalf("nodes %+v", nodes)
	}
	must(t, ccB.Close())
	poll.Within(t, 10*time.Second, "b's stream gone", func() bool { return e.srv.Status("reviews", p.Version).Subscribed == 1 })
	if st := e.srv.Status("reviews", p.Version); st.Acked != 1 || !st.Converged() {
		t.Errorf("after b left: %+v", st)
	}
}

func TestNoClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	e.publish(t, p)
	st := e.srv.Status("reviews", p.Version)
	if !st.NoClients() || st.Subscribed != 0 || !st.Published || !st.Current {
		t.Errorf("status %+v, want published, current, no clients", st)
	}
	if dp := st.DataPlane(); dp.State != engine.AckPending {
		t.Errorf("data plane %+v, want pending", dp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.srv.Wait(ctx, "reviews", p.Version); !errors.Is(err, ErrNoClients) {
		t.Errorf("Wait: %v, want ErrNoClients", err)
	}
}

func TestPublishFailureKeepsSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := canaryPlan("reviews", 100, []string{"reviews"})
	e.publish(t, good)
	c, _ := e.client(t, "keeper", "reviews")
	e.waitAck(t, good)
	before := e.srv.Versions(GroupEnvoy)

	tests := []struct {
		name string
		hook func(Group, *GroupResources)
		plan plan.Plan
		want string
	}{
		{"plan that does not check", nil, edit(good, func(p *plan.Plan) { p.Hosts[0].Routes[0].Destinations = split(200) }), "weight"},
		{"resource that fails Validate", func(_ Group, r *GroupResources) {
			r.Clusters[0].ConnectTimeout.Seconds = -1
		}, canaryPlan("reviews", 10, []string{"reviews"}), "ConnectTimeout"},
		{"inconsistent snapshot", func(_ Group, r *GroupResources) {
			r.Endpoints = r.Endpoints[1:]
		}, canaryPlan("reviews", 20, []string{"reviews"}), "inconsistent"},
	}
	for _, tc := range tests {
		e.setHook(tc.hook)
		err := e.srv.Publish(context.Background(), []plan.Plan{tc.plan})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Publish error %v, want one containing %q", tc.name, err, tc.want)
		}
		if after := e.srv.Versions(GroupEnvoy); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: versions changed from %v to %v", tc.name, before, after)
		}
		if got := xdstest.Calls(t, c, 20); got["canary"] != 20 {
			t.Errorf("%s: served by %v, want the previous plan (all canary)", tc.name, got)
		}
	}
	if n := testutil.ToFloat64(e.srv.metrics.publishes.WithLabelValues("error")); n != float64(len(tests)) {
		t.Errorf("publishes_total{error} = %v, want %d", n, len(tests))
	}
}

func TestEndpointChangeRepublishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := canaryPlan("reviews", 100, []string{"reviews"})
	e.publish(t, p)
	c, _ := e.client(t, "endpoints", "reviews")
	e.waitAck(t, p)
	// The canary revision moves to the stable backend's address.
	must(t, e.eps.Set("", "reviews", revCanary, e.stable))
	poll.Within(t, 10*time.Second, "all calls served at the stable address", func() bool { return xdstest.Calls(t, c, 10)["stable"] == 10 })
}
