// Package xdstest is what tests of xDS serving share: real gRPC backends
// that answer with their name, real proxyless gRPC clients whose bootstrap
// points at a given xDS server, and counting which backend served how
// many RPCs, judged against the binomial interval of the intended split.
// It does not import Sluice's xds package, so that package's own tests
// can use it.
package xdstest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds" // the xDS resolver and balancers, and the test resolver builder

	"github.com/sluicehq/sluice/internal/binomial"
)

// backend is a real gRPC server that answers UnaryCall with its name.
type backend struct {
	grpc_testing.UnimplementedTestServiceServer
	name string
}

func (b *backend) UnaryCall(context.Context, *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	return &grpc_testing.SimpleResponse{Hostname: b.name}, nil
}

// Backend serves a gRPC TestService on host (an IP literal) at a free
// port until the test ends; every UnaryCall answers Hostname = name. It
// returns the "ip:port" it listens on.
func Backend(t testing.TB, host, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	gs := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(gs, &backend{name: name})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// Client is a proxyless gRPC client of xds:///target whose bootstrap
// points at the xDS server at server ("host:port", insecure). Each has its
// own xDS client, hence its own ADS stream, with node id nodeID. It has
// made one RPC, so it is subscribed when returned; the connection closes
// when the test ends.
func Client(t testing.TB, server, nodeID, target string) (grpc_testing.TestServiceClient, *grpc.ClientConn) {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": "e2e"}
	}`, server, nodeID)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xDS resolver of %s: %v", nodeID, err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatalf("client %s: %v", nodeID, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	c := grpc_testing.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("first RPC of %s: %v", nodeID, err)
	}
	return c, cc
}

// Calls makes n RPCs on 8 goroutines with the given metadata (key, value,
// ...) and counts the backends that served them; any RPC error fails the
// test.
func Calls(t testing.TB, c grpc_testing.TestServiceClient, n int, md ...string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
			for next.Add(1) <= int64(n) {
				r, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				counts[r.GetHostname()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("RPC failed: %v", err)
	}
	return counts
}

// CheckShare fails unless the backends "stable" and "canary" served all n
// RPCs and the canary's share is inside the central binomial interval of
// percent for one of checks such checks in the calling test: with alpha
// binomial.Alpha(checks), the test fails a correct split with probability
// at most binomial.FalseFailure. How wrong a split it still catches
// depends on n; see binomial's TestIntervalCatchesWrongSplits.
func CheckShare(t testing.TB, counts map[string]int, n int, percent int32, checks int) {
	t.Helper()
	if counts["stable"]+counts["canary"] != n {
		t.Fatalf("served by %v, want %d RPCs from stable and canary", counts, n)
	}
	alpha := binomial.Alpha(checks)
	lo, hi := binomial.Interval(n, float64(percent)/100, alpha)
	t.Logf("canary served %d of %d at %d%%; the interval for alpha %.2g is [%d, %d]", counts["canary"], n, percent, alpha, lo, hi)
	if c := counts["canary"]; c < lo || c > hi {
		t.Errorf("canary served %d of %d at %d%%; the interval for alpha %.2g is [%d, %d]", c, n, percent, alpha, lo, hi)
	}
}
