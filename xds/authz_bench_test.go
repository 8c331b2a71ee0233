package xds

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/sluicehq/sluice/rollout/plan"
)

// BenchmarkWeightChangeAckedNamespaces is BenchmarkWeightChangeAcked with
// verified identities: N streams spread over 10 namespaces, each
// namespace running the same four services (hosts <svc>.<ns>), every
// node subscribing to everything it is allowed. A weight change of
// ns0/reviews is timed from Publish until every node that may see it has
// ACKed. It reports the views held and the publish time beside the
// latencies. The identity comes from a stream header through a test
// authenticator, so TLS handshakes are not what is measured.
//
//	go test -run '^$' -bench WeightChangeAckedNamespaces -benchtime 20x ./xds/
func BenchmarkWeightChangeAckedNamespaces(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			if n >= 10000 && testing.Short() {
				b.Skip("10,000 streams: run without -short")
			}
			benchNamespaces(b, n, 10)
		})
	}
}

func benchNamespaces(b *testing.B, n, namespaces int) {
	services := []string{"productpage", "reviews", "ratings", "details"}
	eps := NewStatic()
	var plans []plan.Plan
	for i := range namespaces {
		ns := "ns" + strconv.Itoa(i)
		for j, s := range services {
			port := 10000 + 2*(i*len(services)+j)
			must(b, eps.Set(ns, s, revStable, "127.0.0.1:"+strconv.Itoa(port)))
			must(b, eps.Set(ns, s, revCanary, "127.0.0.1:"+strconv.Itoa(port+1)))
			plans = append(plans, nsPlan(ns, s, 5))
		}
	}
	srv, err := New(Options{Endpoints: eps, Logger: quiet, Authenticator: AuthenticatorFunc(func(ctx context.Context) (Identity, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("x-bench-namespace"); len(v) == 1 {
			return KubernetesIdentity("bench", v[0], "app", MethodToken), nil
		}
		return Identity{}, ErrNoCredentials
	})})
	must(b, err)
	addr := serve(b, srv)
	ctx := context.Background()
	must(b, srv.Publish(ctx, plans))
	everything := map[kind][]string{kindListener: nil, kindRoute: nil, kindCluster: nil, kindEndpoint: nil}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	startBenchStreams(b, addr, n, func(ctx context.Context, i int, cc *grpc.ClientConn) error {
		ns := "ns" + strconv.Itoa(i%namespaces)
		c := &adsClient{node: envoyNode(KubernetesIdentity("bench", ns, "app", "").SPIFFE + "/" + strconv.Itoa(i))}
		return c.start(metadata.AppendToOutgoingContext(ctx, "x-bench-namespace", ns), cc, everything)
	})
	at := slices.IndexFunc(plans, func(p plan.Plan) bool { return p.Namespace == "ns0" && p.Service == "reviews" })
	// Every node of ns0 may see ns0/reviews; without views, every node.
	want := n / namespaces
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := srv.Status("ns0/reviews", plans[at].Version)
		if st.Converged() && st.Acked >= want && len(srv.Nodes()) == n {
			want = st.Acked
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d nodes applied ns0/reviews", st.Acked, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)

	var lat, pubDur []time.Duration
	i := 0
	for b.Loop() {
		i++
		p := nsPlan("ns0", "reviews", int32(10+i%80))
		plans[at] = p
		start := time.Now()
		must(b, srv.Publish(ctx, plans))
		pubDur = append(pubDur, time.Since(start))
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		st, err := srv.Wait(wctx, "ns0/reviews", p.Version)
		wcancel()
		if err != nil || st.Acked != want {
			b.Fatalf("Wait: %v; %d of %d ACKed", err, st.Acked, want)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	slices.Sort(pubDur)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(want), "nodes-acking")
	b.ReportMetric(float64(pubDur[len(pubDur)/2].Microseconds())/1000, "publish-p50-ms")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(heap/float64(n), "heap-B/stream")
}

// nsPlan is canaryPlan for a service of a namespace, on host <svc>.<ns>.
func nsPlan(ns, service string, canary int32) plan.Plan {
	p := canaryPlan(service, canary, []string{service + "." + ns})
	return edit(p, func(p *plan.Plan) { p.Namespace = ns })
}
