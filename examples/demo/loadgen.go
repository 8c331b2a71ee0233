package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds" // the xds:/// resolver and its balancers
)

// loadGen is a proxyless gRPC client of xds:///echo: grpc-go's own xDS
// client fetches the routes and endpoints from Sluice, picks a revision
// for every call by the route's weights, and ACKs each plan version. It
// sends calls at a steady rate and records, for each, when it started and
// which version answered, so the split of any time window can be counted
// afterwards.
type loadGen struct {
	cc     *grpc.ClientConn
	client grpc_testing.TestServiceClient
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	calls []call
}

// call is one RPC: its start, the version that answered ("" when none
// did, e.g. no route), and whether it failed.
type call struct {
	at      time.Time
	version string
	failed  bool
}

// startLoad connects to xds:///target through Sluice's xDS server at
// xdsAddr, waits for a first answer, then calls rate times a second.
func startLoad(ctx context.Context, xdsAddr, target string, rate int) (*loadGen, error) {
	// A deployed client names its bootstrap in GRPC_XDS_BOOTSTRAP, which
	// grpc-go reads when the process starts; the demo learns Sluice's port
	// later, so it hands the same JSON to a resolver of its own.
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "demo-load-generator", "cluster": "demo"}
	}`, xdsAddr)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		return nil, fmt.Errorf("xds resolver: %w", err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		return nil, fmt.Errorf("grpc client for xds:///%s: %w", target, err)
	}
	l := &loadGen{cc: cc, client: grpc_testing.NewTestServiceClient(cc)}
	first, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := l.client.UnaryCall(first, &grpc_testing.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		cc.Close()
		return nil, fmt.Errorf("first call to xds:///%s: %w", target, err)
	}
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = stop
	// Calls start on a clock, not back to back: the rate stays the same
	// whatever the latency, and a slow machine does not starve the rest.
	ticks := make(chan time.Time)
	l.wg.Go(func() {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		defer close(ticks)
		for {
			select {
			case <-run.Done():
				return
			case now := <-t.C:
				select {
				case ticks <- now:
				default: // every worker busy: skip this tick
				}
			}
		}
	})
	for range 8 {
		l.wg.Go(func() {
			for range ticks {
				l.once(run)
			}
		})
	}
	return l, nil
}

func (l *loadGen) once(run context.Context) {
	ctx, cancel := context.WithTimeout(run, 2*time.Second)
	defer cancel()
	start := time.Now()
	var trailer metadata.MD
	_, err := l.client.UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.Trailer(&trailer))
	if err != nil && run.Err() != nil {
		return // cut short because the demo is stopping: not a result
	}
	c := call{at: start, failed: err != nil}
	if v := trailer.Get(versionKey); len(v) > 0 {
		c.version = v[0]
	}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

// Stop ends the calls and closes the connection, which ends its xDS stream.
func (l *loadGen) Stop() {
	l.cancel()
	l.wg.Wait()
	_ = l.cc.Close()
}

// split is what the load generator saw in a time window.
type split struct {
	Total int
	// By version: calls answered and, of those, failed. Version "" counts
	// calls no backend answered.
	Calls, Failed map[string]int
	From, To      time.Time
}

// Window counts the calls started in [from, to].
func (l *loadGen) Window(from, to time.Time) split {
	s := split{Calls: map[string]int{}, Failed: map[string]int{}, From: from, To: to}
	if !to.After(from) {
		return s
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.calls {
		if c.at.Before(from) || c.at.After(to) {
			continue
		}
		s.Total++
		s.Calls[c.version]++
		if c.failed {
			s.Failed[c.version]++
		}
	}
	return s
}

// Share is the percentage of the calls that version answered.
func (s split) Share(version string) float64 {
	if s.Total == 0 {
		return 0
	}
	return 100 * float64(s.Calls[version]) / float64(s.Total)
}

// String reads "v1 89.7% / v2 10.3%", versions in order.
func (s split) String() string {
	if s.Total == 0 {
		return "no calls"
	}
	vs := make([]string, 0, len(s.Calls))
	for v := range s.Calls {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		name := v
		if name == "" {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s %.1f%%", name, s.Share(v)))
	}
	return strings.Join(parts, " / ")
}
