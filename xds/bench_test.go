package xds

import (
	"context"
	"fmt"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/rollout/plan"
)

// BenchmarkWeightChangeAcked connects N real ADS streams (Envoy-like
// clients in this process, each on its own stream over loopback TCP, ACKing
// every response) and measures, per weight change, the time from Publish
// until every one of the N nodes has ACKed the new version, as the engine
// would observe it through Wait. It reports p50 and p99 over the
// iterations, and the heap, goroutines and goroutine stacks held per
// stream (both sides of each stream: the clients are in this process too;
// peerbench's BenchmarkXDSSluice measures the server's process alone).
//
//	go test -run '^$' -bench WeightChangeAcked -benchtime 30x ./xds/
//
// The 10,000-stream case is skipped with -short. SLUICE_BENCH_HEAPPROFILE=FILE
// writes a heap profile with every stream connected (add -memprofilerate
// 4096 for finer samples).
func BenchmarkWeightChangeAcked(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			if n >= 10000 && testing.Short() {
				b.Skip("10,000 streams: run without -short")
			}
			benchWeightChange(b, n)
		})
	}
}

func benchWeightChange(b *testing.B, n int) {
	services := []string{"productpage", "reviews", "ratings", "details"}
	eps := staticFor(b, services...)
	srv, err := New(Options{Endpoints: eps, Logger: quiet})
	must(b, err)
	addr := serve(b, srv)
	plans := make([]plan.Plan, len(services))
	for i, s := range services {
		plans[i] = canaryPlan(s, 5, []string{s})
	}
	ctx := context.Background()
	must(b, srv.Publish(ctx, plans))
	res, err := Translate(plans, eps, TranslateOptions{})
	must(b, err)
	initial := map[kind][]string{kindListener: nil, kindCluster: nil}
	for _, r := range res.Envoy.Routes {
		initial[kindRoute] = append(initial[kindRoute], r.GetName())
	}
	for _, c := range res.Envoy.Clusters {
		initial[kindEndpoint] = append(initial[kindEndpoint], c.GetName())
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stacks0 := stackBytes()
	goroutines0 := runtime.NumGoroutine()

	startBenchStreams(b, addr, n, func(ctx context.Context, i int, cc *grpc.ClientConn) error {
		c := &adsClient{node: envoyNode(fmt.Sprintf("bench-%d", i))}
		return c.start(ctx, cc, initial)
	})
	reviews := plans[slices.Index(services, "reviews")]
	waitAll := func(p plan.Plan) {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		st, err := srv.Wait(wctx, "reviews", p.Version)
		if err != nil || st.Acked != n {
			b.Fatalf("Wait: %v; %d of %d ACKed", err, st.Acked, n)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for srv.Status("reviews", reviews.Version).Subscribed < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d streams subscribed", srv.Status("reviews", reviews.Version).Subscribed, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitAll(reviews)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	// Goroutine stacks are outside the heap, and each stream has a few
	// goroutines on each side.
	stacks := stackBytes() - stacks0
	goroutines := runtime.NumGoroutine() - goroutines0
	// The streams' state is what this benchmark is about, and it is gone
	// by the time -memprofile writes; this profile is taken with every
	// stream connected and ACKed.
	if path := os.Getenv("SLUICE_BENCH_HEAPPROFILE"); path != "" {
		writeHeapProfile(b, path)
	}

	var lat, pubDur []time.Duration
	i := 0
	for b.Loop() {
		i++
		p := canaryPlan("reviews", int32(10+i%80), []string{"reviews"})
		plans[slices.Index(services, "reviews")] = p
		start := time.Now()
		must(b, srv.Publish(ctx, plans))
		pubDur = append(pubDur, time.Since(start))
		waitAll(p)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	slices.Sort(pubDur)
	b.ReportMetric(float64(pubDur[len(pubDur)/2].Microseconds())/1000, "publish-p50-ms")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(heap/float64(n), "heap-B/stream")
	b.ReportMetric(heap/(1<<20), "heap-MiB")
	b.ReportMetric(stacks/float64(n), "stack-B/stream")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/stream")
}

// stackBytes is the memory of goroutine stacks in use.
func stackBytes() float64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	rtmetrics.Read(s)
	return float64(s[0].Value.Uint64())
}

// writeHeapProfile writes the heap profile as of the last collection.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	must(b, err)
	defer f.Close()
	must(b, pprof.Lookup("heap").WriteTo(f, 0))
}

// startBenchStreams opens n ADS streams to addr, 64 at a time, with start,
// spread over one connection per 500 streams with Envoy-sized HTTP/2
// windows on the client side, as many sidecars would have. The streams
// end with the benchmark.
func startBenchStreams(b *testing.B, addr string, n int, start func(ctx context.Context, i int, cc *grpc.ClientConn) error) {
	conns := make([]*grpc.ClientConn, max(1, n/500))
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<24))
		must(b, err)
		conns[i] = cc
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() {
		cancel()
		for _, cc := range conns {
			_ = cc.Close()
		}
	})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := start(ctx, i, conns[i%len(conns)]); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
