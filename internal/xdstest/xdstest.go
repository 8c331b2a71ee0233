// Package xdstest is what tests of xDS serving share: real gRPC backends
// that answer with their name, real proxyless gRPC clients whose bootstrap
// points at a given xDS server, and counting which backend served how
// many RPCs, judged against the binomial interval of the intended split.
// The backends and clients are grpcecho's, bound to the test's lifetime.
// It does not import Sluice's xds package, so that package's own tests
// can use it.
package xdstest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/internal/grpcecho"
)

// Backend serves a gRPC TestService on host (an IP literal) at a free
// port until the test ends; every UnaryCall answers Hostname = name. It
// returns the "ip:port" it listens on.
func Backend(t testing.TB, host, name string) string {
	t.Helper()
	b, err := grpcecho.Start(grpcecho.Options{Version: name, Host: host})
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	t.Cleanup(b.Stop)
	return b.Addr
}

// Client is a proxyless gRPC client of xds:///target whose bootstrap
// points at the xDS server at server ("host:port", insecure). Each has its
// own xDS client, hence its own ADS stream, with node id nodeID. It has
// made one RPC, so it is subscribed when returned; the connection closes
// when the test ends.
func Client(t testing.TB, server, nodeID, target string) (grpc_testing.TestServiceClient, *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc, err := grpcecho.Dial(ctx, server, nodeID, target)
	if err != nil {
		t.Fatalf("client %s: %v", nodeID, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return grpc_testing.NewTestServiceClient(cc), cc
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
