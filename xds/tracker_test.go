package xds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/plan"
)

// rawEnv is a server for raw ADS clients: reviews and ratings share port
// 9080; the endpoints are never dialled.
type rawEnv struct {
	srv *Server
	cc  *grpc.ClientConn
}

func newRawEnv(t *testing.T) *rawEnv {
	t.Helper()
	srv, err := New(Options{Endpoints: staticFor(t, "reviews", "ratings"), Logger: quiet})
	must(t, err)
	cc, err := grpc.NewClient(serve(t, srv), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return &rawEnv{srv: srv, cc: cc}
}

func (e *rawEnv) publish(t *testing.T, plans ...plan.Plan) {
	t.Helper()
	must(t, e.srv.Publish(context.Background(), plans))
}

// wait returns Wait's status and error with a generous deadline.
func (e *rawEnv) wait(p plan.Plan) (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return e.srv.Wait(ctx, PlanKey(&p), p.Version)
}

func (e *rawEnv) converged(t *testing.T, p plan.Plan, subscribed int) {
	t.Helper()
	// Wait answers ErrNoClients at once while nobody subscribes; the
	// clients here are just starting.
	poll.Within(t, 10*time.Second, fmt.Sprintf("%d clients subscribed", subscribed), func() bool { return e.srv.Status(PlanKey(&p), p.Version).Subscribed >= subscribed })
	st, err := e.wait(p)
	if err != nil || st.Subscribed != subscribed || st.Acked != subscribed {
		t.Fatalf("Wait(%s %s): %v, status %+v; want %d subscribed and ACKed", p.Service, p.Version, err, st, subscribed)
	}
}

// startClient starts c on a stream that ends with the test.
func (e *rawEnv) startClient(t *testing.T, c *adsClient, initial map[kind][]string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	must(t, c.start(ctx, e.cc, initial))
	return cancel
}

// envoyInitial is Envoy's start: wildcard listeners and clusters.
var envoyInitial = map[kind][]string{kindListener: nil, kindCluster: nil}

func TestSotWEnvoyAndGRPCNodes(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	reviews, ratings := canaryPlan("reviews", 5, []string{"reviews"}), canaryPlan("ratings", 5, []string{"ratings"})
	e.publish(t, reviews, ratings)
	var nackRoutes atomic.Bool
	envoy := &adsClient{node: envoyNode("sidecar"), follow: true, reject: func(r *discoveryv3.DiscoveryResponse) string {
		if nackRoutes.Load() && r.GetTypeUrl() == kindURL[kindRoute] {
			return "route configuration 9080: virtual host rejected"
		}
		return ""
	}}
	e.startClient(t, envoy, envoyInitial)
	grpcc := &adsClient{node: grpcNode("proxyless"), follow: true}
	e.startClient(t, grpcc, map[kind][]string{kindListener: {"reviews"}})

	// The sidecar subscribes to every service; the gRPC client to reviews.
	e.converged(t, reviews, 2)
	e.converged(t, ratings, 1)
	if st := e.srv.HostStatus("reviews", reviews.Version); !st.Converged() || st.Subscribed != 2 {
		t.Errorf("host status %+v", st)
	}
	groups := map[Group]int{}
	for _, n := range e.srv.Nodes() {
		groups[n.Node.Group]++
	}
	if groups[GroupEnvoy] != 1 || groups[GroupGRPC] != 1 {
		t.Errorf("nodes by group %v, want one of each", groups)
	}

	nackRoutes.Store(true)
	reviews = canaryPlan("reviews", 50, []string{"reviews"})
	e.publish(t, reviews, ratings)
	st, err := e.wait(reviews)
	var rej *RejectedError
	if !errors.As(err, &rej) || len(st.Rejected) != 1 || st.Rejected[0].Node.ID != "sidecar" ||
		st.Rejected[0].TypeURL != kindURL[kindRoute] || !strings.Contains(st.Rejected[0].Message, "virtual host rejected") {
		t.Fatalf("Wait: %v, status %+v; want the sidecar's route NACK", err, st)
	}
	// Wait returns at the first rejection; the gRPC node's ACK may land
	// just after it, and must then count.
	deadline := time.Now().Add(10 * time.Second)
	for st.Acked != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		st = e.srv.Status(PlanKey(&reviews), reviews.Version)
	}
	if st.Acked != 1 || len(st.Rejected) != 1 {
		t.Errorf("the gRPC node applied the plan, yet Acked = %d (rejected %d)", st.Acked, len(st.Rejected))
	}

	nackRoutes.Store(false)
	reviews = canaryPlan("reviews", 60, []string{"reviews"})
	e.publish(t, reviews, ratings)
	e.converged(t, reviews, 2)
}

func TestNackAttribution(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	plans := func(w int32) (plan.Plan, plan.Plan) {
		return canaryPlan("reviews", w, []string{"reviews"}), canaryPlan("ratings", w, []string{"ratings"})
	}
	reviews, ratings := plans(5)
	e.publish(t, reviews, ratings)
	var nack atomic.Value
	nack.Store("")
	c := &adsClient{node: grpcNode("both"), follow: true, reject: func(r *discoveryv3.DiscoveryResponse) string {
		if r.GetTypeUrl() == kindURL[kindListener] {
			return nack.Load().(string)
		}
		return ""
	}}
	e.startClient(t, c, map[kind][]string{kindListener: {"reviews", "ratings"}})
	e.converged(t, reviews, 1)
	e.converged(t, ratings, 1)

	// The client names the ratings listener: reviews is not to blame.
	nack.Store(`listener "ratings": route has an invalid regex`)
	reviews, ratings = plans(50)
	e.publish(t, reviews, ratings)
	if _, err := e.wait(ratings); !errors.As(err, new(*RejectedError)) {
		t.Fatalf("Wait(ratings): %v, want a rejection", err)
	}
	if st := e.srv.Status("reviews", reviews.Version); len(st.Rejected) != 0 || len(st.Pending) != 1 {
		t.Errorf("reviews: %+v, want pending and not rejected", st)
	}

	// Text that names no resource concerns every resource of the response.
	nack.Store("malformed response")
	reviews, ratings = plans(60)
	e.publish(t, reviews, ratings)
	for _, p := range []plan.Plan{reviews, ratings} {
		if _, err := e.wait(p); !errors.As(err, new(*RejectedError)) {
			t.Errorf("Wait(%s): %v, want a rejection", p.Service, err)
		}
	}
}

func TestListenerAloneIsNotApplied(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	e.publish(t, p)
	// This client ACKs the listener but never asks for its clusters.
	lazy := &adsClient{node: grpcNode("lazy")}
	e.startClient(t, lazy, map[kind][]string{kindListener: {"reviews"}})
	<-lazy.responses
	poll.Within(t, 10*time.Second, "the listener ACKed", func() bool {
		n := e.srv.Nodes()
		return len(n) == 1 && len(n[0].Types) == 1 && n[0].Types[0].AckedVersion != ""
	})
	if st := e.srv.Status("reviews", p.Version); st.Subscribed != 1 || st.Acked != 0 || len(st.Pending) != 1 || st.Pending[0].ID != "lazy" {
		t.Errorf("status %+v, want the listener-only node pending", st)
	}
	e.startClient(t, &adsClient{node: grpcNode("eager"), follow: true}, map[kind][]string{kindListener: {"reviews"}})
	poll.Within(t, 10*time.Second, "eager's ACK", func() bool { return e.srv.Status("reviews", p.Version).Acked == 1 })
	if st := e.srv.Status("reviews", p.Version); st.Subscribed != 2 || st.Pending[0].ID != "lazy" {
		t.Errorf("status %+v, want eager ACKed and lazy pending", st)
	}
}

func TestDeltaAckAndReconnect(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	e.publish(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	c := &deltaClient{node: envoyNode("delta")}
	must(t, c.start(ctx, e.cc, [numKinds]map[string]string{}))
	e.converged(t, p, 1)

	p = canaryPlan("reviews", 50, []string{"reviews"})
	e.publish(t, p)
	e.converged(t, p, 1)

	cancel()
	<-c.done
	poll.Within(t, 10*time.Second, "the closed stream gone", func() bool { return e.srv.Status("reviews", p.Version).Subscribed == 0 })

	// Reconnecting with what it has, the client gets no resource again, so
	// only its initial versions can show that it is up to date.
	again := &deltaClient{node: envoyNode("delta")}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	must(t, again.start(ctx2, e.cc, c.have))
	e.converged(t, p, 1)
	for _, n := range e.srv.Nodes() {
		if !n.Delta {
			t.Errorf("node %v is not a delta stream", n.Node)
		}
	}
}

func TestWaitDeadlineAndSupersede(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	e.publish(t, p)
	var hold atomic.Bool
	c := &adsClient{node: envoyNode("slow"), follow: true, hold: func(r *discoveryv3.DiscoveryResponse) bool {
		return hold.Load() && r.GetTypeUrl() == kindURL[kindRoute]
	}}
	e.startClient(t, c, envoyInitial)
	e.converged(t, p, 1)
	hold.Store(true)

	held := canaryPlan("reviews", 50, []string{"reviews"})
	e.publish(t, held)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st, err := e.srv.Wait(ctx, "reviews", held.Version)
	if !errors.Is(err, context.DeadlineExceeded) || len(st.Pending) != 1 || st.Pending[0].ID != "slow" {
		t.Errorf("Wait: %v, status %+v; want the deadline with slow pending", err, st)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := e.wait(held)
		errc <- err
	}()
	// Supersede only once the waiter is registered, or it would find the
	// version superseded from the start, which tests less.
	poll.Within(t, 10*time.Second, "the waiter registered", func() bool {
		e.srv.tracker.mu.Lock()
		defer e.srv.tracker.mu.Unlock()
		return len(e.srv.tracker.watches) == 1
	})
	e.publish(t, canaryPlan("reviews", 60, []string{"reviews"}))
	if err := <-errc; !errors.Is(err, ErrSuperseded) {
		t.Errorf("Wait: %v, want ErrSuperseded", err)
	}
}

func TestGroupOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		node *corev3.Node
		want Group
	}{
		{&corev3.Node{UserAgentName: "envoy"}, GroupEnvoy},
		{&corev3.Node{UserAgentName: "gRPC Go"}, GroupGRPC},
		{&corev3.Node{UserAgentName: "gRPC Java"}, GroupGRPC},
		{&corev3.Node{}, GroupEnvoy},
		{nil, GroupEnvoy},
		{explicitGroup(&corev3.Node{UserAgentName: "envoy"}, GroupGRPC), GroupGRPC},
		{explicitGroup(&corev3.Node{UserAgentName: "gRPC Go"}, GroupEnvoy), GroupEnvoy},
		{explicitGroup(&corev3.Node{UserAgentName: "gRPC Go"}, "bogus"), GroupGRPC},
	}
	for _, tc := range tests {
		if got := GroupOf(tc.node); got != tc.want {
			t.Errorf("GroupOf(%v) = %s, want %s", tc.node, got, tc.want)
		}
	}
}

func TestStaticEndpoints(t *testing.T) {
	t.Parallel()
	s := NewStatic()
	must(t, s.Set("ns", "reviews", "v1", "10.0.0.1:80", "[::1]:8080"))
	must(t, s.Set("ns", "reviews", "v2", "10.0.0.2:80"))
	select {
	case <-s.Changed():
	default:
		t.Fatal("no change signalled")
	}
	select {
	case <-s.Changed():
		t.Fatal("two sets signalled twice; signals must coalesce")
	default:
	}
	got, err := s.Endpoints("ns", "reviews", "v1")
	must(t, err)
	if len(got) != 2 || got[0].String() != "10.0.0.1:80" || got[1].String() != "[::1]:8080" {
		t.Errorf("endpoints %v", got)
	}
	if got, _ := s.Endpoints("", "reviews", "v1"); len(got) != 0 {
		t.Errorf("another namespace has %v", got)
	}
	for _, bad := range []string{"reviews:80", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:99999"} {
		if err := s.Set("", "x", "v1", bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestOnlyChangedTypesArePushed(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	reviews, ratings := canaryPlan("reviews", 5, []string{"reviews"}), canaryPlan("ratings", 5, []string{"ratings"})
	e.publish(t, reviews, ratings)
	e.startClient(t, &adsClient{node: envoyNode("counted"), follow: true}, envoyInitial)
	e.converged(t, reviews, 1)
	pushes := func() [numKinds]float64 {
		var out [numKinds]float64
		for k := range numKinds {
			out[k] = testutil.ToFloat64(e.srv.metrics.pushesBy[GroupEnvoy][k])
		}
		return out
	}
	before := pushes()

	unchanged := func() float64 { return testutil.ToFloat64(e.srv.metrics.publishes.WithLabelValues("unchanged")) }
	n := unchanged()
	e.publish(t, reviews, ratings)
	if unchanged() < n+1 {
		t.Errorf("publishes_total{unchanged} went from %v to %v, want one more", n, unchanged())
	}

	reviews = canaryPlan("reviews", 50, []string{"reviews"})
	e.publish(t, reviews, ratings)
	e.converged(t, reviews, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := e.srv.WaitHost(ctx, "reviews", reviews.Version); err != nil || st.Host != "reviews" {
		t.Errorf("WaitHost: %v, %+v", err, st)
	}
	after := pushes()
	for k := range numKinds {
		want := before[k]
		if k == kindRoute {
			want++
		}
		if after[k] != want {
			t.Errorf("%s pushes went from %v to %v, want %v", kindName[k], before[k], after[k], want)
		}
	}
}
