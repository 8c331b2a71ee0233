package peerbench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
)

// BenchmarkPushToTraffic times a release from the user's action to the
// data plane: from `git push` returning (Sluice: standalone `sluice run`,
// and controller mode) or from the server-side apply of the Rollout that
// Argo CD or Flux would send after their poll (Argo Rollouts + istiod)
// until the proxyless gRPC clients (GRPCClients, PEERBENCH_GRPC_CLIENTS of
// them, PEERBENCH_GRPC_RATE calls a second each, default 10 × 100) have a
// call answered by v2 at its first step's weight (50%): the first client
// (first-rpc-ms) and every client (all-clients-ms). Both include the wait
// for a call that picks v2 once a client has the new weights: at 100
// calls a second and 50%, a few ms for the first of 10 clients, about
// 45 ms on average for the last.
//
//	make peers && go test -run '^$' -bench PushToTraffic -benchtime 1x -count 5 -timeout 1h ./internal/peerbench/
//
// PEERBENCH_TRAFFIC_SIDES picks the sides (sluice-run, sluice-controller,
// argo-istiod; all
// by default).
func BenchmarkPushToTraffic(b *testing.B) {
	benchTraffic(b, false)
}

// BenchmarkSLOBreach has a canary at 50% under analysis (every
// PEERBENCH_ANALYSIS_INTERVAL, 2 s by default; the same query, threshold
// and Prometheus for every side) start failing half its calls, and
// times from the first failing call any client sees to the last call any
// client sends to the canary (breach-to-last-canary-ms): detection by
// the analysis, the abort, and the route back to 100% stable on every
// client. Sluice's goal: at most one analysis interval + 100 ms. The
// time is also split where Prometheus first answers the query over the
// threshold (polled every 25 ms): before, the scrape (the same for every
// side); after, the product's own part.
//
//	make peers && go test -run '^$' -bench SLOBreach -benchtime 1x -count 5 -timeout 1h ./internal/peerbench/
func BenchmarkSLOBreach(b *testing.B) {
	benchTraffic(b, true)
}

// trafficSides are the sides of the traffic benchmarks, by name.
var trafficSides = []struct {
	name string
	make func(b *testing.B, logs *os.File) TrafficSide
}{
	{"sluice-run", func(b *testing.B, logs *os.File) TrafficSide {
		return &SluiceRun{Bin: sluiceBinary(b), Log: logs}
	}},
	{"sluice-controller", func(b *testing.B, logs *os.File) TrafficSide {
		cfg, scheme := env.Start(b)
		return &SluiceController{Bin: sluiceBinary(b), Cfg: cfg, Scheme: scheme, Log: logs}
	}},
	{"argo-istiod", func(b *testing.B, logs *os.File) TrafficSide {
		cfg, scheme := env.Start(b)
		return &ArgoIstiod{Argo: peerBinary(b, "rollouts-controller"), Istiod: peerBinary(b, "pilot-discovery"),
			Cfg: cfg, Scheme: scheme, Log: logs}
	}},
}

func benchTraffic(b *testing.B, breach bool) {
	clients := envInt(b, "PEERBENCH_GRPC_CLIENTS", 10)
	rate := envInt(b, "PEERBENCH_GRPC_RATE", 100)
	interval := 2 * time.Second
	if s := os.Getenv("PEERBENCH_ANALYSIS_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			b.Fatalf("PEERBENCH_ANALYSIS_INTERVAL=%q: want a duration of at least 1s", s)
		}
		interval = d
	}
	host, err := grpcecho.PodAddress()
	if err != nil {
		b.Skip(err)
	}
	backends := map[string]*grpcecho.Backend{}
	var targets []string
	for _, v := range []string{"v1", "v2"} {
		e, err := grpcecho.Start(grpcecho.Options{Service: "echo", Version: v, Host: host})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Stop()
		backends[v] = e
		targets = append(targets, e.MetricsAddr)
	}
	prom, err := promtest.Start(filepath.Join(testbin.Require(b, "prometheus"), "prometheus"), targets...)
	if err != nil {
		b.Fatal(err)
	}
	defer prom.Stop()
	plan := ReleasePlan{Analysis: breach, Interval: interval, PrometheusURL: prom.URL, Backends: backends}
	want := strings.Split(os.Getenv("PEERBENCH_TRAFFIC_SIDES"), ",")
	for _, side := range trafficSides {
		if want[0] != "" && !slices.Contains(want, side.name) {
			continue
		}
		b.Run(side.name, func(b *testing.B) {
			for range b.N {
				logs, err := keptLog(b, side.name)
				if err != nil {
					b.Fatal(err)
				}
				s := side.make(b, logs)
				if breach {
					runBreach(b, s, plan, clients, rate).report(b)
				} else {
					runPush(b, s, plan, clients, rate).report(b)
				}
				// The machine is shared: its load is part of the figure.
				if load, err := loadAverage(); err == nil {
					b.ReportMetric(load, "loadavg-1m")
				}
				logs.Close()
			}
		})
	}
}

// startTraffic starts the side and its clients with v1 serving them all.
func startTraffic(b *testing.B, ctx context.Context, s TrafficSide, plan ReleasePlan, n, rate int) *GRPCClients {
	b.Helper()
	for _, e := range plan.Backends {
		e.SetFailPercent(0)
	}
	xdsAddr, target, err := s.Start(ctx, plan)
	if err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	nodes := make([]GRPCNode, n)
	for i := range nodes {
		nodes[i] = s.Node(i)
	}
	dial, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c, err := StartGRPCClients(dial, xdsAddr, target, nodes, rate)
	if err != nil {
		b.Fatalf("%s: clients: %v", s.Name(), err)
	}
	// Everything on v1 before the release.
	from := time.Now()
	time.Sleep(time.Second)
	if share, calls := c.Share("v1", from, time.Now()); share != 1 || calls == 0 {
		c.Stop()
		b.Fatalf("%s: before the release, v1 answered %.1f%% of %d calls, want all", s.Name(), 100*share, calls)
	}
	return c
}

type pushResult struct {
	first, all time.Duration
	// On Kubernetes: release → canary ReplicaSet seen by the harness →
	// its endpoints published (the harness's kubelet, 100 ms) → first
	// RPC on v2.
	stages []time.Duration
	share  float64 // v2's share of the calls once every client had one
	calls  int
}

func (r *pushResult) report(b *testing.B) {
	b.ReportMetric(msOf(r.first), "first-rpc-ms")
	b.ReportMetric(msOf(r.all), "all-clients-ms")
	b.ReportMetric(100*r.share, "v2-share-%")
	b.Logf("push → first RPC on v2 %v, → every client %v; then v2 answered %.1f%% of %d calls", r.first, r.all, 100*r.share, r.calls)
	if len(r.stages) == 3 {
		b.ReportMetric(msOf(r.stages[0]), "to-replicaset-ms")
		b.ReportMetric(msOf(r.stages[2]), "endpoints-to-first-rpc-ms")
		b.Logf("release → canary ReplicaSet %v → its endpoints published %v → first RPC on v2 %v", r.stages[0], r.stages[1], r.stages[2])
	}
}

func runPush(b *testing.B, s TrafficSide, plan ReleasePlan, n, rate int) *pushResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer s.Stop()
	c := startTraffic(b, ctx, s, plan, n, rate)
	defer c.Stop()
	pushed, err := s.Release(ctx)
	if err != nil {
		b.Fatalf("%s: release: %v", s.Name(), err)
	}
	first, all, err := c.WaitFirst(ctx, "v2", pushed, 3*time.Minute)
	if err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	// The new weights, not a passing state: about half of the calls.
	from := time.Now()
	time.Sleep(2 * time.Second)
	res := &pushResult{first: first.Sub(pushed), all: all.Sub(pushed)}
	if ct, ok := s.(CanaryTimes); ok {
		seen, published := ct.CanaryTimes("echo:v2")
		if !seen.IsZero() && !published.IsZero() {
			res.stages = []time.Duration{seen.Sub(pushed), published.Sub(seen), first.Sub(published)}
		}
	}
	res.share, res.calls = c.Share("v2", from, time.Now())
	if math.Abs(res.share-CanaryWeight/100.0) > 0.15 {
		b.Fatalf("%s: after the release v2 answered %.1f%% of %d calls, want about %d%%", s.Name(), 100*res.share, res.calls, CanaryWeight)
	}
	return res
}

type breachResult struct {
	toLast time.Duration // first failing call → last call to the canary
	// The same in two parts: until Prometheus answers the query over the
	// threshold, and from then on (the product's own part).
	toVisible, fromVisible time.Duration
	interval               time.Duration
	failed                 int // calls v2 answered after the breach
}

func (r *breachResult) report(b *testing.B) {
	b.ReportMetric(msOf(r.toLast), "breach-to-last-canary-ms")
	b.ReportMetric(msOf(r.toVisible), "breach-to-prometheus-ms")
	b.ReportMetric(msOf(r.fromVisible), "prometheus-to-last-canary-ms")
	b.Logf("first failing call → last call to v2: %v = %v until Prometheus answers over %g + %v from there (analysis interval %v; goal ≤ interval + 100ms met: %v); v2 answered %d calls after the breach",
		r.toLast, r.toVisible, ErrorThreshold, r.fromVisible, r.interval, r.toLast <= r.interval+100*time.Millisecond, r.failed)
}

// breachFail is the share of calls the canary fails once breached: well
// past ErrorThreshold even averaged over the first seconds of RateWindow.
const breachFail = 50

func runBreach(b *testing.B, s TrafficSide, plan ReleasePlan, n, rate int) *breachResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer s.Stop()
	c := startTraffic(b, ctx, s, plan, n, rate)
	defer c.Stop()
	pushed, err := s.Release(ctx)
	if err != nil {
		b.Fatalf("%s: release: %v", s.Name(), err)
	}
	if _, _, err := c.WaitFirst(ctx, "v2", pushed, 3*time.Minute); err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	// The analysis has measured v2 healthy a few times, over a full
	// rate window of its calls. The breach then comes at a random moment
	// of the analysis's interval, as a real one would: at a fixed delay
	// after the release every run would meet the measurements at the
	// same phase, and measure that phase only.
	time.Sleep(RateWindow + 2*plan.Interval + rand.N(plan.Interval))
	if share, calls := c.Share("v2", time.Now().Add(-2*time.Second), time.Now()); math.Abs(share-CanaryWeight/100.0) > 0.15 {
		b.Fatalf("%s: before the breach v2 answered %.1f%% of %d calls, want about %d%%", s.Name(), 100*share, calls, CanaryWeight)
	}
	breach := time.Now()
	plan.Backends["v2"].SetFailPercent(breachFail)
	over := make(chan error, 1)
	var visible time.Time
	go func() {
		var err error
		visible, err = WhenOver(ctx, plan.PrometheusURL, ErrorRatioQuery(RateWindow), ErrorThreshold, time.Minute)
		over <- err
	}()
	firstFail, _, err := c.WaitFirstFailure(ctx, "v2", breach, time.Minute)
	if err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	last, calls, err := c.WaitGone(ctx, "v2", breach, 3*time.Second, 3*time.Minute)
	if err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	if err := <-over; err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	var why string
	for range 40 {
		var aborted bool
		if aborted, why, err = s.Aborted(ctx); err == nil && aborted {
			return &breachResult{toLast: last.Sub(firstFail), toVisible: visible.Sub(firstFail), fromVisible: last.Sub(visible),
				interval: plan.Interval, failed: calls}
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.Fatalf("%s: the canary has no calls, but the rollout is not aborted (%v): %s", s.Name(), err, why)
	return nil
}

// loadAverage is the machine's load average over the last minute.
func loadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/loadavg: empty")
	}
	return strconv.ParseFloat(f[0], 64)
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
