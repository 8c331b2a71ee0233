package xds

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// policyBackend is a TestService backend whose calls do what their
// metadata asks, so that a test can see a timeout and a retry from the
// client's side: "x-sleep" (a Go duration) delays the answer, and the
// first attempt of each "x-fail-once" key fails with UNAVAILABLE, every
// later one succeeds. It counts the attempts per key.
type policyBackend struct {
	grpc_testing.UnimplementedTestServiceServer
	mu       sync.Mutex
	attempts map[string]int
}

func (b *policyBackend) UnaryCall(ctx context.Context, _ *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-sleep"); len(v) == 1 {
		d, err := time.ParseDuration(v[0])
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "x-sleep: %v", err)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if v := md.Get("x-fail-once"); len(v) == 1 {
		b.mu.Lock()
		b.attempts[v[0]]++
		first := b.attempts[v[0]] == 1
		b.mu.Unlock()
		if first {
			return nil, status.Error(codes.Unavailable, "first attempt fails on purpose")
		}
	}
	return &grpc_testing.SimpleResponse{Hostname: "stable"}, nil
}

func (b *policyBackend) attemptsOf(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts[key]
}

// startPolicyBackend serves a policyBackend on 127.0.0.1 until the test
// ends and returns it with its address.
func startPolicyBackend(t *testing.T) (*policyBackend, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	b := &policyBackend{attempts: map[string]int{}}
	gs := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(gs, b)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return b, lis.Addr().String()
}

// TestGRPCPolicyPerMatch drives every part of a policy rule through real
// proxyless gRPC clients, all at once, from a Rollout spec through the
// engine: rules matched by header, by URI and by cookie; an abort and a
// delay that hit only their share of the matching calls (inside the
// binomial interval of their percent); a per-match timeout that lets
// calls run longer than the service's; and per-match retries that make a
// failing first attempt succeed where calls without the rule fail.
func TestGRPCPolicyPerMatch(t *testing.T) {
	t.Parallel()
	backend, addr := startPolicyBackend(t)
	e := &env{eps: NewStatic(), reg: prometheus.NewRegistry(), stable: addr}
	must(t, e.eps.Set("", "reviews", revStable, addr))
	var err error
	e.srv, err = New(Options{Endpoints: e.eps, Registerer: e.reg, Logger: quiet})
	must(t, err)
	e.addr = serve(t, e.srv)

	user := func(name string) []v1alpha1.RouteMatch {
		return []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "x-user", Exact: &name}}}}
	}
	i32 := func(v int32) *int32 { return &v }
	d := func(v time.Duration) *metav1.Duration { return &metav1.Duration{Duration: v} }
	// Generous figures: on a loaded machine (and under -race) a plain
	// call can take a good part of a second, and must neither hit the
	// service's timeout nor pass for a delayed one.
	const (
		abortPercent = 25
		delayPercent = 50
		delay        = 3 * time.Second
		serviceLimit = 4 * time.Second
		patientLimit = 30 * time.Second
	)
	emptyCall := "/grpc.testing.TestService/EmptyCall"
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080,
				Policy: &v1alpha1.RoutePolicy{
					Timeout: d(serviceLimit),
					Rules: []v1alpha1.PolicyRule{
						{Name: "flaky", Match: user("flaky"), Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{GRPCStatus: i32(int32(codes.ResourceExhausted)), Percent: abortPercent}}},
						{Name: "sluggish", Match: user("sluggish"), Timeout: d(patientLimit), Fault: &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{FixedDelay: metav1.Duration{Duration: delay}, Percent: delayPercent}}},
						{Name: "patient", Match: user("patient"), Timeout: d(patientLimit)},
						{Name: "retried", Match: []v1alpha1.RouteMatch{{Cookies: []v1alpha1.CookieMatch{{Name: "retry", Value: "yes"}}}}, Retries: &v1alpha1.RetryPolicy{Attempts: 2}},
						{Name: "no-empty", Match: []v1alpha1.RouteMatch{{URI: &v1alpha1.URIMatch{Exact: &emptyCall}}}, Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{GRPCStatus: i32(int32(codes.PermissionDenied)), Percent: 100}}},
					},
				}},
			Backend:  &v1alpha1.Backend{Version: revStable, Endpoints: []string{addr}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{{SetWeight: i32(50)}}}},
		},
		Status: v1alpha1.RolloutStatus{StableRevision: revStable, StableBackend: &v1alpha1.Backend{Version: revStable, Endpoints: []string{addr}}},
	}
	out, err := engine.Step(engine.Input{Rollout: ro, Now: time.Unix(1e9, 0)})
	must(t, err)
	p := out.Plan
	e.publish(t, p)
	c, _ := e.client(t, "per-match", "reviews")
	e.waitAck(t, p)

	call := func(md ...string) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*patientLimit)
		defer cancel()
		start := time.Now()
		_, err := c.UnaryCall(metadata.AppendToOutgoingContext(ctx, md...), &grpc_testing.SimpleRequest{})
		return time.Since(start), err
	}
	// Two share checks in this test.
	alpha := binomial.Alpha(2)
	var wg sync.WaitGroup

	// Abort by percent: a quarter of flaky's calls get RESOURCE_EXHAUSTED.
	wg.Go(func() {
		const n = 2000
		var aborted, other atomic.Int64
		var inner sync.WaitGroup
		var next atomic.Int64
		for range 16 {
			inner.Go(func() {
				for next.Add(1) <= n {
					_, err := call("x-user", "flaky")
					switch status.Code(err) {
					case codes.OK:
					case codes.ResourceExhausted:
						aborted.Add(1)
					default:
						other.Add(1)
					}
				}
			})
		}
		inner.Wait()
		lo, hi := binomial.Interval(n, abortPercent/100.0, alpha)
		t.Logf("flaky: %d of %d aborted at %d%% (interval [%d, %d])", aborted.Load(), n, abortPercent, lo, hi)
		if a := int(aborted.Load()); a < lo || a > hi || other.Load() > 0 {
			t.Errorf("flaky: %d of %d aborted at %d%%, want [%d, %d]; %d other failures", a, n, abortPercent, lo, hi, other.Load())
		}
	})

	// Delay by percent: half of sluggish's calls wait the delay, which
	// their rule's own timeout allows.
	wg.Go(func() {
		const n = 300
		var delayed, failed atomic.Int64
		var inner sync.WaitGroup
		var next atomic.Int64
		for range 100 {
			inner.Go(func() {
				for next.Add(1) <= n {
					took, err := call("x-user", "sluggish")
					switch {
					case err != nil:
						failed.Add(1)
					case took >= delay:
						delayed.Add(1)
					}
				}
			})
		}
		inner.Wait()
		lo, hi := binomial.Interval(n, delayPercent/100.0, alpha)
		t.Logf("sluggish: %d of %d delayed %s at %d%% (interval [%d, %d])", delayed.Load(), n, delay, delayPercent, lo, hi)
		if dl := int(delayed.Load()); dl < lo || dl > hi || failed.Load() > 0 {
			t.Errorf("sluggish: %d of %d delayed at %d%%, want [%d, %d]; %d failed", dl, n, delayPercent, lo, hi, failed.Load())
		}
	})

	// Timeouts: the service's limit cuts a slow answer; the patient
	// rule's longer one lets it through.
	slow := 2 * serviceLimit // well past the service's limit, well inside the rule's
	for range 3 {
		wg.Go(func() {
			if _, err := call("x-sleep", slow.String()); status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("a %s answer under the service's %s timeout: %v, want DEADLINE_EXCEEDED", slow, serviceLimit, err)
			}
		})
		wg.Go(func() {
			if _, err := call("x-user", "patient", "x-sleep", slow.String()); err != nil {
				t.Errorf("a %s answer under the patient rule's %s timeout: %v, want OK", slow, patientLimit, err)
			}
		})
	}

	// Retries: a cookie-matched rule retries the failed first attempt;
	// the same call without the cookie fails.
	wg.Go(func() {
		for i := range 20 {
			key := fmt.Sprintf("retried-%d", i)
			if _, err := call("x-fail-once", key, "cookie", "theme=dark; retry=yes"); err != nil {
				t.Errorf("%s with the retry rule: %v, want OK after a retry", key, err)
			}
			if n := backend.attemptsOf(key); n != 2 {
				t.Errorf("%s with the retry rule: %d attempts reached the backend, want 2", key, n)
			}
			key = fmt.Sprintf("plain-%d", i)
			if _, err := call("x-fail-once", key, "cookie", "retry=no"); status.Code(err) != codes.Unavailable {
				t.Errorf("%s without the retry rule: %v, want UNAVAILABLE", key, err)
			}
			if n := backend.attemptsOf(key); n != 1 {
				t.Errorf("%s without the retry rule: %d attempts, want 1", key, n)
			}
		}
	})

	// URI: EmptyCall is aborted by its rule; UnaryCall, the same client,
	// is untouched, and so is everyone else.
	wg.Go(func() {
		for range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.EmptyCall(ctx, &grpc_testing.Empty{})
			cancel()
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("EmptyCall: %v, want PERMISSION_DENIED from the URI rule", err)
			}
			if _, err := call("x-user", "someone"); err != nil {
				t.Errorf("UnaryCall of someone: %v, want OK", err)
			}
		}
	})
	wg.Wait()
}

// TestGRPCHTTPStatusMapping: an abort that gives only an HTTP status
// reaches a proxyless gRPC client as the code docs/api.md (FaultAbort)
// says, for every status the mapping names and one it does not.
func TestGRPCHTTPStatusMapping(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := map[int32]codes.Code{
		400: codes.Internal, 401: codes.Unauthenticated, 403: codes.PermissionDenied, 404: codes.Unimplemented,
		429: codes.Unavailable, 502: codes.Unavailable, 503: codes.Unavailable, 504: codes.Unavailable,
		500: codes.Unknown, 418: codes.Unknown,
	}
	var routes []plan.Route
	for httpStatus := range want {
		s := fmt.Sprint(httpStatus)
		routes = append(routes, plan.Route{
			Name:         "abort-" + s,
			Match:        []plan.Match{header("x-status", plan.HeaderExact, s)},
			Destinations: split(0),
			Policy:       &plan.Policy{Fault: &plan.Fault{Abort: &plan.FaultAbort{HTTPStatus: httpStatus, Percent: 100}}},
		})
	}
	p := canaryPlan("reviews", 0, []string{"reviews"}, routes...)
	e.publish(t, p)
	c, _ := e.client(t, "status-mapping", "reviews")
	e.waitAck(t, p)
	for httpStatus, code := range want {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-status", fmt.Sprint(httpStatus)), &grpc_testing.SimpleRequest{})
		cancel()
		if got := status.Code(err); got != code {
			t.Errorf("abort with HTTP %d: %v, want %v", httpStatus, err, code)
		}
	}
}
