package grpcecho

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds" // the xds:/// resolver and its balancers
)

// LoadOptions describe a load generator.
type LoadOptions struct {
	// XDSAddr is the xDS server (host:port, plaintext).
	XDSAddr string
	// Target is the xds:/// name called: a host of the Rollout.
	Target string
	// Rate is calls per second.
	Rate int
	// NodeID names the client to the xDS server (its ACKs, its NACKs);
	// default "echo-load-generator".
	NodeID string
}

// Load is a running load generator.
type Load struct {
	cc     *grpc.ClientConn
	client grpc_testing.TestServiceClient
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	calls []call
}

// call is one RPC: its start, the version that answered ("" when none
// did, e.g. no route), and its error, nil when it succeeded.
type call struct {
	at      time.Time
	took    time.Duration
	version string
	err     *status.Status
}

// CallError is one failed call: when it started, how long it took, the
// version that answered ("" when no backend did) and its gRPC status.
type CallError struct {
	At      time.Time
	Took    time.Duration
	Version string
	Code    codes.Code
	Message string
}

// String reads "15:04:05.123 after 2s: no answer: DeadlineExceeded:
// context deadline exceeded".
func (e CallError) String() string {
	v := e.Version
	if v == "" {
		v = "no answer"
	}
	return fmt.Sprintf("%s after %s: %s: %s: %s", e.At.Format("15:04:05.000"), e.Took.Round(time.Millisecond), v, e.Code, e.Message)
}

// callTimeout bounds one call: a call to an endpoint that went away must
// not hold a worker for long.
const callTimeout = 2 * time.Second

// workers make calls concurrently, so a slow call does not slow the rate.
const workers = 8

// StartLoad connects to xds:///Target through the xDS server, waits for a
// first answer (up to 30 s), then calls Rate times a second until Stop.
func StartLoad(ctx context.Context, o LoadOptions) (*Load, error) {
	if o.Rate <= 0 {
		return nil, fmt.Errorf("load generator for xds:///%s: rate %d, want at least 1 call per second", o.Target, o.Rate)
	}
	if o.NodeID == "" {
		o.NodeID = "echo-load-generator"
	}
	first, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cc, err := Dial(first, o.XDSAddr, o.NodeID, o.Target)
	if err != nil {
		return nil, err
	}
	l := &Load{cc: cc, client: grpc_testing.NewTestServiceClient(cc)}
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = stop
	// Calls start on a clock, not back to back: the rate stays the same
	// whatever the latency, and a slow machine does not starve the rest.
	ticks := Pace(run, o.Rate, &l.wg)
	for range workers {
		l.wg.Go(func() {
			for range ticks {
				l.once(run)
			}
		})
	}
	return l, nil
}

// Pace sends rate ticks a second until run ends, then closes the
// channel; a tick that finds no receiver waiting (every worker busy) is
// skipped, so load on a clock never piles up behind a slow call. The
// goroutine is counted in wg.
func Pace(run context.Context, rate int, wg *sync.WaitGroup) <-chan time.Time {
	ticks := make(chan time.Time)
	wg.Go(func() {
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
				default:
				}
			}
		}
	})
	return ticks
}

// Dial connects a proxyless gRPC client to xds:///target: its own xDS
// client, named nodeID, fetches routes and endpoints from the plaintext
// xDS server at xdsAddr (host:port) over an ADS stream of its own. It
// returns once a first call has been answered, so the client has
// subscribed and the route works, or fails when ctx ends first. The
// caller closes the connection, which ends the stream.
func Dial(ctx context.Context, xdsAddr, nodeID, target string) (*grpc.ClientConn, error) {
	bootstrap, err := Bootstrap(xdsAddr, nodeID)
	if err != nil {
		return nil, err
	}
	// A deployed client names its bootstrap in GRPC_XDS_BOOTSTRAP, which
	// grpc-go reads when the process starts; the caller learns the xDS
	// server's port later, so the same JSON goes to a resolver of its own.
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, fmt.Errorf("xds resolver of %s: %w", nodeID, err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		return nil, fmt.Errorf("grpc client %s for xds:///%s: %w", nodeID, target, err)
	}
	if _, err := grpc_testing.NewTestServiceClient(cc).UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		_ = cc.Close()
		return nil, fmt.Errorf("first call of %s to xds:///%s: %w", nodeID, target, err)
	}
	return cc, nil
}

// Bootstrap is grpc-go's xDS bootstrap for a plaintext xDS server at addr
// (host:port), naming the client nodeID.
func Bootstrap(addr, nodeID string) ([]byte, error) {
	type server struct {
		URI      string              `json:"server_uri"`
		Creds    []map[string]string `json:"channel_creds"`
		Features []string            `json:"server_features"`
	}
	b, err := json.Marshal(struct {
		Servers []server          `json:"xds_servers"`
		Node    map[string]string `json:"node"`
	}{
		Servers: []server{{URI: addr, Creds: []map[string]string{{"type": "insecure"}}, Features: []string{"xds_v3"}}},
		Node:    map[string]string{"id": nodeID, "cluster": "echo"},
	})
	if err != nil {
		return nil, fmt.Errorf("xds bootstrap: %w", err)
	}
	return b, nil
}

func (l *Load) once(run context.Context) {
	ctx, cancel := context.WithTimeout(run, callTimeout)
	defer cancel()
	start := time.Now()
	var trailer metadata.MD
	_, err := l.client.UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.Trailer(&trailer))
	if err != nil && run.Err() != nil {
		return // cut short because the load is stopping: not a result
	}
	c := call{at: start, took: time.Since(start)}
	if err != nil {
		c.err = status.Convert(err)
	}
	if v := trailer.Get(VersionKey); len(v) > 0 {
		c.version = v[0]
	}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

// Stop ends the calls and closes the connection, which ends its xDS
// stream.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
	_ = l.cc.Close()
}

// Split is what the load generator saw in a time window.
type Split struct {
	Total int
	// By version: calls answered and, of those, failed. Version "" counts
	// calls no backend answered.
	Calls, Failed map[string]int
	// Errors are the failed calls, in the order they ended.
	Errors   []CallError
	From, To time.Time
}

// ErrorsOf are the errors of the calls version answered ("": of the
// calls no backend answered).
func (s Split) ErrorsOf(version string) []CallError {
	var out []CallError
	for _, e := range s.Errors {
		if e.Version == version {
			out = append(out, e)
		}
	}
	return out
}

// Window counts the calls started in [from, to].
func (l *Load) Window(from, to time.Time) Split {
	s := Split{Calls: map[string]int{}, Failed: map[string]int{}, From: from, To: to}
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
		if c.err != nil {
			s.Failed[c.version]++
			s.Errors = append(s.Errors, CallError{At: c.at, Took: c.took, Version: c.version, Code: c.err.Code(), Message: c.err.Message()})
		}
	}
	return s
}

// ErrNoCalls is WaitFor's error when no call at all was made in time.
var ErrNoCalls = errors.New("no calls")

// WaitFor polls until every call started in the last window was answered
// by version, and returns when the first such window began: the moment
// the client had moved to that version for good. It fails when ctx ends.
func (l *Load) WaitFor(ctx context.Context, version string, window time.Duration) (time.Time, error) {
	t := time.NewTicker(window / 4)
	defer t.Stop()
	var last Split
	for {
		now := time.Now()
		last = l.Window(now.Add(-window), now)
		if last.Total > 0 && last.Calls[version] == last.Total && last.Failed[version] == 0 {
			return now.Add(-window), nil
		}
		select {
		case <-ctx.Done():
			if last.Total == 0 {
				return time.Time{}, fmt.Errorf("waiting for all calls to reach %s: %w: %w", version, ErrNoCalls, ctx.Err())
			}
			return time.Time{}, fmt.Errorf("waiting for all calls to reach %s: the last %s saw %s: %w", version, window, last, ctx.Err())
		case <-t.C:
		}
	}
}

// Share is the percentage of the calls that version answered.
func (s Split) Share(version string) float64 {
	if s.Total == 0 {
		return 0
	}
	return 100 * float64(s.Calls[version]) / float64(s.Total)
}

// String reads "v1 89.7% / v2 10.3%", versions in order.
func (s Split) String() string {
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
