package xds

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/plan"
)

func TestNackBackoffLadder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		inRow int
		want  time.Duration
	}{
		{0, 0}, {1, 0}, {2, 250 * time.Millisecond}, {3, 500 * time.Millisecond}, {4, time.Second},
		{7, 8 * time.Second}, {8, 10 * time.Second}, {100, 10 * time.Second},
	} {
		if got := nackBackoff(tc.inRow); got != tc.want {
			t.Errorf("nackBackoff(%d) = %s, want %s", tc.inRow, got, tc.want)
		}
	}
}

// A client that NACKs everything it is sent is answered ever more slowly:
// the stream waits out 250 ms, 500 ms, 1 s, ... before its next response,
// and an ACK starts the ladder again. (The sleep is recorded, not slept, so
// the test takes no time.)
func TestNackStormBacksOff(t *testing.T) {
	t.Parallel()
	srv, err := New(Options{Endpoints: staticFor(t, "reviews"), Logger: quiet})
	must(t, err)
	var mu sync.Mutex
	var waits []time.Duration
	srv.tracker.sleep = func(d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	}
	addr := serve(t, srv)
	must(t, srv.Publish(context.Background(), []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"})}))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rejectMu sync.Mutex
	rejecting := true
	c := &adsClient{node: envoyNode("storm"), follow: true, reject: func(*discoveryv3.DiscoveryResponse) string {
		rejectMu.Lock()
		defer rejectMu.Unlock()
		if rejecting {
			return "rejected, as always"
		}
		return ""
	}}
	must(t, c.start(ctx, conn, map[kind][]string{kindListener: nil}))
	recorded := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
	poll.Within(t, 10*time.Second, "eight backoffs", func() bool { return len(recorded()) >= 8 })
	for i, d := range recorded()[:8] {
		if want := nackBackoff(i + 2); d != want {
			t.Fatalf("backoff %d: %s, want %s (all: %v)", i, d, want, recorded())
		}
	}
	// One ACK, then NACKs again: the ladder starts over.
	setRejecting := func(v bool) {
		rejectMu.Lock()
		rejecting = v
		rejectMu.Unlock()
	}
	setRejecting(false)
	accepted := canaryPlan("reviews", 10, []string{"reviews"})
	must(t, srv.Publish(ctx, []plan.Plan{accepted}))
	// The last NACK stands until the client ACKs again, so Wait may
	// first see it: ask until the ACK is in.
	poll.Within(t, 10*time.Second, "the accepted plan acknowledged", func() bool {
		wctx, stop := context.WithTimeout(ctx, time.Second)
		defer stop()
		_, err := srv.Wait(wctx, "reviews", accepted.Version)
		return err == nil
	})
	before := len(recorded())
	setRejecting(true)
	must(t, srv.Publish(ctx, []plan.Plan{canaryPlan("reviews", 20, []string{"reviews"})}))
	poll.Within(t, 10*time.Second, "a backoff after the ACK", func() bool { return len(recorded()) > before })
	if d := recorded()[before]; d != nackBackoffBase {
		t.Errorf("first backoff after an ACK: %s, want %s", d, nackBackoffBase)
	}
}

// BenchmarkNackStorm measures what one client that NACKs everything costs
// the server: discovery responses sent to it per second over a 10 s
// window (the window of the figure before the backoff: 93,977
// responses in 10 s), in its last 5 s alone (where the backoff has
// climbed), and the process' CPU time (server and client together) per
// second of the window. "backoff" is the server as it is; "none" sleeps
// no backoff, for the figure before it on the same machine.
//
//	go test ./xds -run '^$' -bench NackStorm -benchtime 1x
func BenchmarkNackStorm(b *testing.B) {
	for _, tc := range []struct {
		name    string
		backoff bool
	}{{"backoff", true}, {"none", false}} {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := New(Options{Endpoints: staticFor(b, "reviews"), Logger: quiet})
			must(b, err)
			if !tc.backoff {
				srv.tracker.sleep = func(time.Duration) {}
			}
			addr := serve(b, srv)
			must(b, srv.Publish(context.Background(), []plan.Plan{canaryPlan("reviews", 5, []string{"reviews"})}))
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			must(b, err)
			defer conn.Close()
			const window, late = 10 * time.Second, 5 * time.Second
			for b.Loop() {
				cpu0 := processCPU(b)
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), window)
				c := &adsClient{node: envoyNode("storm"), reject: func(*discoveryv3.DiscoveryResponse) string { return "no" }}
				must(b, c.start(ctx, conn, envoyInitial))
				n, nLate := 0, 0
				for ctx.Err() == nil {
					select {
					case <-c.responses:
						n++
						if time.Since(start) >= window-late {
							nLate++
						}
					case <-ctx.Done():
					}
				}
				cancel()
				b.ReportMetric(float64(n)/window.Seconds(), "responses/s")
				b.ReportMetric(float64(nLate)/late.Seconds(), "last-5s-responses/s")
				b.ReportMetric((processCPU(b)-cpu0).Seconds()/window.Seconds(), "cpu-s/s")
			}
		})
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
