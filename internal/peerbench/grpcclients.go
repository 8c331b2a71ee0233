package peerbench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds" // the xds:/// resolver and its balancers

	"github.com/sluicehq/sluice/internal/grpcecho"
)

// GRPCNode is how a proxyless gRPC client names itself in its xDS
// bootstrap: the node id and metadata its control plane expects (istiod:
// an istio-agent's node id and GENERATOR "grpc"; Sluice: any id).
type GRPCNode struct {
	ID       string
	Metadata map[string]any
}

// GRPCClients are proxyless gRPC clients of one service (grpc-go's own xDS
// client, one ADS stream each, as a deployed client has), each calling at
// a steady rate and recording which version answered every call: the
// data plane whose routing the traffic benchmarks time. The same code
// for every control plane; only the bootstrap's node differs.
type GRPCClients struct {
	clients []*grpcClient
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type grpcClient struct {
	cc     *grpc.ClientConn
	client grpc_testing.TestServiceClient

	mu    sync.Mutex
	calls []answered
}

// answered is one call: when it started, the version that answered (""
// for none) and whether it failed.
type answered struct {
	at      time.Time
	version string
	failed  bool
}

// grpcCallTimeout bounds one call, so a call to an endpoint gone does not
// hold a worker.
const grpcCallTimeout = 2 * time.Second

// grpcWorkers make each client's calls concurrently, so a slow call does
// not slow its rate.
const grpcWorkers = 4

// StartGRPCClients dials xds:///target through the plaintext xDS server
// at xdsAddr, one client per node, waits until each has had a first
// answer (until ctx ends), then has each call rate times a second until
// Stop.
func StartGRPCClients(ctx context.Context, xdsAddr, target string, nodes []GRPCNode, rate int) (*GRPCClients, error) {
	g := &GRPCClients{}
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.cancel = cancel
	var mu sync.Mutex
	var firstErr error
	var dialed sync.WaitGroup
	g.clients = make([]*grpcClient, len(nodes))
	for i, n := range nodes {
		dialed.Go(func() {
			cc, err := dialXDS(ctx, xdsAddr, target, n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			g.clients[i] = &grpcClient{cc: cc, client: grpc_testing.NewTestServiceClient(cc)}
		})
	}
	dialed.Wait()
	if firstErr != nil {
		g.Stop()
		return nil, firstErr
	}
	for _, c := range g.clients {
		c.start(run, rate, &g.wg)
	}
	return g, nil
}

// dialXDS connects one client and returns once a first call was answered.
func dialXDS(ctx context.Context, xdsAddr, target string, n GRPCNode) (*grpc.ClientConn, error) {
	boot, err := grpcBootstrap(xdsAddr, n)
	if err != nil {
		return nil, err
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		return nil, fmt.Errorf("xds resolver of %s: %w", n.ID, err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		return nil, fmt.Errorf("grpc client %s of xds:///%s: %w", n.ID, target, err)
	}
	if _, err := grpc_testing.NewTestServiceClient(cc).UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		_ = cc.Close()
		return nil, fmt.Errorf("first call of %s to xds:///%s: %w", n.ID, target, err)
	}
	return cc, nil
}

// grpcBootstrap is grpc-go's xDS bootstrap for a plaintext server.
func grpcBootstrap(addr string, n GRPCNode) ([]byte, error) {
	type server struct {
		URI      string              `json:"server_uri"`
		Creds    []map[string]string `json:"channel_creds"`
		Features []string            `json:"server_features"`
	}
	type node struct {
		ID       string         `json:"id"`
		Cluster  string         `json:"cluster,omitempty"`
		Metadata map[string]any `json:"metadata,omitempty"`
	}
	b, err := json.Marshal(struct {
		Servers []server `json:"xds_servers"`
		Node    node     `json:"node"`
	}{
		Servers: []server{{URI: addr, Creds: []map[string]string{{"type": "insecure"}}, Features: []string{"xds_v3"}}},
		Node:    node{ID: n.ID, Cluster: "peerbench", Metadata: n.Metadata},
	})
	if err != nil {
		return nil, fmt.Errorf("xds bootstrap of %s: %w", n.ID, err)
	}
	return b, nil
}

// start has c call rate times a second, on a clock: a tick finding every
// worker busy is skipped.
func (c *grpcClient) start(run context.Context, rate int, wg *sync.WaitGroup) {
	ticks := grpcecho.Pace(run, rate, wg)
	for range grpcWorkers {
		wg.Go(func() {
			for range ticks {
				c.once(run)
			}
		})
	}
}

func (c *grpcClient) once(run context.Context) {
	ctx, cancel := context.WithTimeout(run, grpcCallTimeout)
	defer cancel()
	start := time.Now()
	var trailer metadata.MD
	_, err := c.client.UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.Trailer(&trailer))
	if err != nil && run.Err() != nil {
		return
	}
	a := answered{at: start, failed: err != nil}
	if v := trailer.Get(grpcecho.VersionKey); len(v) > 0 {
		a.version = v[0]
	}
	c.mu.Lock()
	c.calls = append(c.calls, a)
	c.mu.Unlock()
}

// Stop ends the calls and closes the connections (their ADS streams).
func (g *GRPCClients) Stop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
	for _, c := range g.clients {
		if c != nil {
			_ = c.cc.Close()
		}
	}
}

// firstOf is, per client, the start of its first call since after that
// version answered (zero: none yet).
func (g *GRPCClients) firstOf(version string, after time.Time, failed bool) []time.Time {
	out := make([]time.Time, len(g.clients))
	for i, c := range g.clients {
		c.mu.Lock()
		for _, a := range c.calls {
			if !a.at.Before(after) && a.version == version && (!failed || a.failed) {
				out[i] = a.at
				break
			}
		}
		c.mu.Unlock()
	}
	return out
}

// WaitFirst waits until every client has had a call since after answered
// by version, and returns the earliest such call's start and the latest
// client's first (when every client was on the new weights).
func (g *GRPCClients) WaitFirst(ctx context.Context, version string, after time.Time, timeout time.Duration) (first, all time.Time, err error) {
	return g.waitFirst(ctx, version, after, timeout, false)
}

// WaitFirstFailure is WaitFirst for the calls version failed.
func (g *GRPCClients) WaitFirstFailure(ctx context.Context, version string, after time.Time, timeout time.Duration) (first, all time.Time, err error) {
	return g.waitFirst(ctx, version, after, timeout, true)
}

func (g *GRPCClients) waitFirst(ctx context.Context, version string, after time.Time, timeout time.Duration, failed bool) (first, all time.Time, err error) {
	deadline := time.Now().Add(timeout)
	for {
		ts := g.firstOf(version, after, failed)
		seen := 0
		first, all = time.Time{}, time.Time{}
		for _, t := range ts {
			if t.IsZero() {
				continue
			}
			seen++
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(all) {
				all = t
			}
		}
		if seen == len(ts) {
			return first, all, nil
		}
		if time.Now().After(deadline) {
			return first, all, fmt.Errorf("after %s, %d of %d clients had a call answered by %s (failed only: %v)", timeout, seen, len(ts), version, failed)
		}
		select {
		case <-ctx.Done():
			return first, all, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitGone waits until no client has called version for quiet, and
// returns the start of the last call any client sent to it, and how many
// calls since after it answered.
func (g *GRPCClients) WaitGone(ctx context.Context, version string, after time.Time, quiet, timeout time.Duration) (last time.Time, n int, err error) {
	deadline := time.Now().Add(timeout)
	for {
		last, n = time.Time{}, 0
		for _, c := range g.clients {
			c.mu.Lock()
			for _, a := range c.calls {
				if a.version == version && !a.at.Before(after) {
					n++
					if a.at.After(last) {
						last = a.at
					}
				}
			}
			c.mu.Unlock()
		}
		now := time.Now()
		if now.Sub(last) >= quiet+grpcCallTimeout {
			return last, n, nil
		}
		if now.After(deadline) {
			return last, n, fmt.Errorf("after %s, clients still call %s (last at %s)", timeout, version, last.Format(time.StampMilli))
		}
		select {
		case <-ctx.Done():
			return last, n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Share is the share of calls started in [from, to] that version
// answered, and how many calls there were.
func (g *GRPCClients) Share(version string, from, to time.Time) (float64, int) {
	total, of := 0, 0
	for _, c := range g.clients {
		c.mu.Lock()
		for _, a := range c.calls {
			if a.at.Before(from) || a.at.After(to) {
				continue
			}
			total++
			if a.version == version {
				of++
			}
		}
		c.mu.Unlock()
	}
	if total == 0 {
		return 0, 0
	}
	return float64(of) / float64(total), total
}

// LastOf is, per client, the start of its last call since after that
// version answered (zero: none): a client's last call to a revision is
// about when it applied a route without it (it calls every 1/rate s),
// so their spread is the route's spread over the clients.
func (g *GRPCClients) LastOf(version string, after time.Time) []time.Time {
	out := make([]time.Time, len(g.clients))
	for i, c := range g.clients {
		c.mu.Lock()
		for _, a := range c.calls {
			if a.version == version && !a.at.Before(after) && a.at.After(out[i]) {
				out[i] = a.at
			}
		}
		c.mu.Unlock()
	}
	return out
}
