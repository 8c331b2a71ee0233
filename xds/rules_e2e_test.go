package xds

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestGRPCPolicyRules is the seed's fault scenario, all at once and from a
// Rollout spec through the engine: alice is aborted with the gRPC status
// the rule gives, carol and dave with HTTP statuses that gRPC maps to
// codes, bob is delayed 2 s, and everyone else is served untouched.
func TestGRPCPolicyRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := func(name string) []v1alpha1.RouteMatch {
		v := name
		return []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: &v}}}}
	}
	i32 := func(v int32) *int32 { return &v }
	const delay = 2 * time.Second
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080,
				Policy: &v1alpha1.RoutePolicy{Rules: []v1alpha1.PolicyRule{
					{Name: "alice", Match: user("alice"), Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: i32(500), GRPCStatus: i32(int32(codes.Internal)), Percent: 100}}},
					{Name: "bob", Match: user("bob"), Fault: &v1alpha1.FaultPolicy{Delay: &v1alpha1.FaultDelay{FixedDelay: metav1.Duration{Duration: delay}, Percent: 100}}},
					{Name: "carol", Match: user("carol"), Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: i32(503), Percent: 100}}},
					{Name: "dave", Match: user("dave"), Fault: &v1alpha1.FaultPolicy{Abort: &v1alpha1.FaultAbort{HTTPStatus: i32(500), Percent: 100}}},
				}}},
			Backend:  &v1alpha1.Backend{Version: revStable, Endpoints: []string{e.stable}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{{SetWeight: i32(50)}}}},
		},
		Status: v1alpha1.RolloutStatus{StableRevision: revStable, StableBackend: &v1alpha1.Backend{Version: revStable, Endpoints: []string{e.stable}}},
	}
	out, err := engine.Step(engine.Input{Rollout: ro, Now: time.Unix(1e9, 0)})
	must(t, err)
	p := out.Plan
	e.publish(t, p)
	c, _ := e.client(t, "rules", "reviews")
	e.waitAck(t, p)

	tests := []struct {
		user string
		want codes.Code
		slow bool
	}{
		{"alice", codes.Internal, false},    // the rule's gRPC status
		{"carol", codes.Unavailable, false}, // HTTP 503 → UNAVAILABLE
		{"dave", codes.Unknown, false},      // HTTP 500 → UNKNOWN
		{"bob", codes.OK, true},
		{"eve", codes.OK, false},
		{"", codes.OK, false},
	}
	var wg sync.WaitGroup
	for _, tc := range tests {
		for range 5 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if tc.user != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "end-user", tc.user)
				}
				start := time.Now()
				r, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
				took := time.Since(start)
				if got := status.Code(err); got != tc.want {
					t.Errorf("end-user %q: status %v (%v), want %v", tc.user, got, err, tc.want)
					return
				}
				if err == nil && r.GetHostname() != "stable" {
					t.Errorf("end-user %q: served by %q, want stable", tc.user, r.GetHostname())
				}
				if tc.slow && took < delay {
					t.Errorf("end-user %q: took %s, less than the injected %s", tc.user, took, delay)
				}
				if !tc.slow && took >= delay {
					t.Errorf("end-user %q: took %s; only bob is delayed", tc.user, took)
				}
			})
		}
	}
	wg.Wait()
}
