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
// time is also split at what the harness can date (breachResult): the
// first scrape holding a failure and Prometheus answering the query over
// the threshold (the same for every side), the product's failed
// measurement and its abort in its API, and the clients leaving the
// canary. PEERBENCH_SCRAPE_INTERVAL and PEERBENCH_RATE_WINDOW set
// Prometheus's scrapes and the query's window for every side.
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
	interval := envDuration(b, "PEERBENCH_ANALYSIS_INTERVAL", 2*time.Second, time.Second)
	scrape := envDuration(b, "PEERBENCH_SCRAPE_INTERVAL", time.Second, 10*time.Millisecond)
	window := envDuration(b, "PEERBENCH_RATE_WINDOW", RateWindow, 2*scrape)
	host, err := grpcecho.PodAddress()
	if err != nil {
		b.Skip(err)
	}
	plan := ReleasePlan{Analysis: breach, Interval: interval, RateWindow: window, Scrape: scrape}
	want := strings.Split(os.Getenv("PEERBENCH_TRAFFIC_SIDES"), ",")
	for _, side := range trafficSides {
		if want[0] != "" && !slices.Contains(want, side.name) {
			continue
		}
		b.Run(side.name, func(b *testing.B) {
			for range b.N {
				func() {
					logs, err := keptLog(b, side.name)
					if err != nil {
						b.Fatal(err)
					}
					// A fresh data plane and Prometheus each run: new ports
					// give the targets a new scrape phase (Prometheus derives
					// it from the target), so the runs sample the phase
					// between the scrapes and the analysis's measurements
					// instead of all sharing one.
					plan := plan
					stop := startDataPlane(b, host, &plan)
					// Stopped also when the run fails (b.Fatal ends the
					// goroutine through its defers).
					defer stop()
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
				}()
			}
		})
	}
}

// startDataPlane starts the echo service's revisions, v1 and v2, on host
// and a Prometheus scraping them every scrape, into plan; the returned
// func stops them.
func startDataPlane(b *testing.B, host string, plan *ReleasePlan) (stop func()) {
	b.Helper()
	var stops []func()
	stop = func() {
		for _, f := range slices.Backward(stops) {
			f()
		}
	}
	plan.Backends = map[string]*grpcecho.Backend{}
	var targets []string
	for _, v := range []string{"v1", "v2"} {
		e, err := grpcecho.Start(grpcecho.Options{Service: "echo", Version: v, Host: host})
		if err != nil {
			stop()
			b.Fatal(err)
		}
		stops = append(stops, e.Stop)
		plan.Backends[v] = e
		targets = append(targets, e.MetricsAddr)
	}
	prom, err := promtest.StartEvery(filepath.Join(testbin.Require(b, "prometheus"), "prometheus"), plan.Scrape, targets...)
	if err != nil {
		stop()
		b.Fatal(err)
	}
	stops = append(stops, func() { _ = prom.Stop() })
	plan.PrometheusURL = prom.URL
	return stop
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
	// From the first failing call any client sees, in the order things
	// happen: the first scrape holding a failure (Prometheus's sample
	// timestamp); Prometheus answering the query over the threshold
	// (polled every 25 ms); the product's failed measurement (its own
	// record, zero if it gives none); the abort visible in the product's
	// API (polled every 25 ms); the first client's last call to the
	// canary; the last call any client sends to it.
	toScrape, toVisible, toMeasured, toAborted, toFirstOff, toLast time.Duration
	measured                                                       bool
	interval, scrape                                               time.Duration
	failed                                                         int // calls v2 answered after the breach
}

func (r *breachResult) report(b *testing.B) {
	b.ReportMetric(msOf(r.toLast), "breach-to-last-canary-ms")
	b.ReportMetric(msOf(r.toScrape), "breach-to-scrape-ms")
	b.ReportMetric(msOf(r.toVisible), "breach-to-prometheus-ms")
	b.ReportMetric(msOf(r.toLast-r.toVisible), "prometheus-to-last-canary-ms")
	b.ReportMetric(msOf(r.toAborted), "breach-to-abort-seen-ms")
	b.ReportMetric(msOf(r.toLast-r.toAborted), "abort-seen-to-last-canary-ms")
	b.ReportMetric(msOf(r.toLast-r.toFirstOff), "first-to-last-client-off-ms")
	measured := "none recorded"
	if r.measured {
		b.ReportMetric(msOf(r.toMeasured), "breach-to-measurement-ms")
		b.ReportMetric(msOf(r.toMeasured-r.toVisible), "prometheus-to-measurement-ms")
		b.ReportMetric(msOf(r.toAborted-r.toMeasured), "measurement-to-abort-seen-ms")
		// Where the measurements fall between the scrapes: just after
		// one, a measurement sees fresh data at once; just before, it
		// waits for the next measurement after the scrape.
		b.ReportMetric(msOf(((r.toMeasured-r.toScrape)%r.scrape+r.scrape)%r.scrape), "measurement-after-scrape-ms")
		measured = r.toMeasured.String()
	}
	b.Logf("from the first failing call: scrape holding it %v, Prometheus over %g %v, failed measurement %s, abort seen %v, first client off the canary %v, last call to v2 %v (analysis interval %v; goal ≤ interval + 100ms met: %v); v2 answered %d calls after the breach",
		r.toScrape, ErrorThreshold, r.toVisible, measured, r.toAborted, r.toFirstOff, r.toLast, r.interval, r.toLast <= r.interval+100*time.Millisecond, r.failed)
}

// breachFail is the share of calls the canary fails once breached: well
// past ErrorThreshold even averaged over the first seconds of the rate
// window.
const breachFail = 50

// failingCalls selects the canary's failed-call counters.
const failingCalls = `demo_rpcs_total{service="echo",version="v2",code!="OK"}`

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
	time.Sleep(plan.RateWindow + 2*plan.Interval + rand.N(plan.Interval))
	if share, calls := c.Share("v2", time.Now().Add(-2*time.Second), time.Now()); math.Abs(share-CanaryWeight/100.0) > 0.15 {
		b.Fatalf("%s: before the breach v2 answered %.1f%% of %d calls, want about %d%%", s.Name(), 100*share, calls, CanaryWeight)
	}
	breach := time.Now()
	plan.Backends["v2"].SetFailPercent(breachFail)
	over := make(chan error, 1)
	var visible time.Time
	go func() {
		var err error
		visible, err = WhenOver(ctx, plan.PrometheusURL, ErrorRatioQuery(plan.RateWindow), ErrorThreshold, time.Minute)
		over <- err
	}()
	abort := make(chan time.Time, 1)
	go func() { abort <- whenAborted(ctx, s) }()
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
	var aborted time.Time
	select {
	case aborted = <-abort:
	case <-time.After(10 * time.Second):
	}
	if aborted.IsZero() {
		_, why, err := s.Aborted(ctx)
		b.Fatalf("%s: the canary has no calls, but the rollout is not aborted (%v): %s", s.Name(), err, why)
	}
	scraped, err := FirstScrapeOver(ctx, plan.PrometheusURL, failingCalls, breach)
	if err != nil {
		b.Fatalf("%s: %v", s.Name(), err)
	}
	r := &breachResult{toScrape: scraped.Sub(firstFail), toVisible: visible.Sub(firstFail), toAborted: aborted.Sub(firstFail),
		toLast: last.Sub(firstFail), interval: plan.Interval, scrape: plan.Scrape, failed: calls}
	firstOff := last
	for _, t := range c.LastOf("v2", breach) {
		if !t.IsZero() && t.Before(firstOff) {
			firstOff = t
		}
	}
	r.toFirstOff = firstOff.Sub(firstFail)
	if at, ok := s.(AnalysisTimes); ok {
		m, err := at.FailedMeasurement(ctx)
		if err != nil {
			b.Fatalf("%s: failed measurement: %v", s.Name(), err)
		}
		if !m.IsZero() {
			r.toMeasured, r.measured = m.Sub(firstFail), true
		}
	}
	return r
}

// whenAborted polls the side every 25 ms until its rollout is aborted,
// and returns the start of the poll that saw it (zero if ctx ended
// first).
func whenAborted(ctx context.Context, s TrafficSide) time.Time {
	for {
		start := time.Now()
		if aborted, _, err := s.Aborted(ctx); err == nil && aborted {
			return start
		}
		select {
		case <-ctx.Done():
			return time.Time{}
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// envDuration is the duration in the environment variable name, or def;
// below least is an error.
func envDuration(b *testing.B, name string, def, least time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < least {
		b.Fatalf("%s=%q: want a duration of at least %v", name, s, least)
	}
	return d
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
