package peerbench

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// BenchmarkXDSSameClients connects the same N Envoy-like ADS clients
// (Fleet, in this process) to istiod and then to Sluice's xDS server, for
// the same services (PEERBENCH_SERVICES, default 4: svc-000 …, two
// revisions of two endpoints each, one weighted route), and times weight
// changes of svc-000 until every client has ACKed a route configuration
// with the new weight. istiod gets the change as a VirtualService edit
// (what Sluice's or Argo Rollouts' controller writes), Sluice's server as a
// Publish (what its engine's runner calls). Per run: PEERBENCH_CHANGES
// changes (default 10), p50 and max of change → last ACK, the push's own
// spread (first receipt → last ACK), server CPU per change and RSS with N
// clients connected.
//
//	make peers && go test -run '^$' -bench XDSSameClients -benchtime 1x -count 3 -timeout 2h ./internal/peerbench/
//
// PEERBENCH_CLIENTS lists the N (default 100,1000,5000);
// PEERBENCH_STREAMS_PER_CONN how many clients share one HTTP/2 connection
// (default 100; 1 is a connection per client, as real proxies have).
func BenchmarkXDSSameClients(b *testing.B) {
	cfg, scheme := env.Start(b)
	admin, err := client.New(unlimited(cfg), client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	changes := envInt(b, "PEERBENCH_CHANGES", 10)
	b.Logf("istiod %s", ToolModuleVersion("istiod", "istio.io/istio"))
	for _, services := range envInts(b, "PEERBENCH_SERVICES", []int{4}) {
		for _, n := range envInts(b, "PEERBENCH_CLIENTS", []int{100, 1000, 5000}) {
			for _, srv := range []struct {
				name string
				make func(*testing.B) XDSServer
			}{
				{"istiod", func(b *testing.B) XDSServer { return &Istiod{Bin: peerBinary(b, "pilot-discovery"), C: admin} }},
				{"sluice", func(b *testing.B) XDSServer {
					bin, version, err := BuildXDSServer(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					b.Logf("xdsserver built from %s", version)
					return &SluiceXDS{Bin: bin}
				}},
			} {
				b.Run(fmt.Sprintf("services=%d/clients=%d/%s", services, n, srv.name), func(b *testing.B) {
					s := srv.make(b)
					for range b.N {
						runXDS(b, cfg, s, services, n, changes).report(b)
					}
				})
			}
		}
	}
}

// BenchmarkXDSSluice is BenchmarkXDSSameClients' Sluice side alone, with
// no API server (Sluice's xDS server needs none), for measuring the
// server's memory per stream: the same clients, changes and figures, and
// the server's heap, goroutine stacks and goroutines per stream
// (xdsserver's runtime/metrics, with every client connected, less the same
// before the first connected). PEERBENCH_XDS_HEAPPROFILE=FILE writes the
// server's heap profile with every client connected.
//
//	go test -run '^$' -bench XDSSluice -benchtime 1x -count 3 ./internal/peerbench/
//
// PEERBENCH_CLIENTS lists the N (default 1000,5000);
// PEERBENCH_XDSSERVER=PATH runs that xdsserver binary instead of building
// HEAD's (to compare builds in one queue of runs), with the flags in
// PEERBENCH_XDSSERVER_ARGS (say -memprofilerate=4096 for a finer heap
// profile); PEERBENCH_FULL_NODE=1 has the clients send an Envoy's whole
// node (build, features, metadata, 100 extensions), not only its id;
// PEERBENCH_TLS=1 serves TLS (a certificate made for the run).
func BenchmarkXDSSluice(b *testing.B) {
	changes := envInt(b, "PEERBENCH_CHANGES", 10)
	for _, services := range envInts(b, "PEERBENCH_SERVICES", []int{4}) {
		for _, n := range envInts(b, "PEERBENCH_CLIENTS", []int{1000, 5000}) {
			b.Run(fmt.Sprintf("services=%d/clients=%d", services, n), func(b *testing.B) {
				bin := os.Getenv("PEERBENCH_XDSSERVER")
				if bin == "" {
					var version string
					var err error
					if bin, version, err = BuildXDSServer(context.Background()); err != nil {
						b.Fatal(err)
					}
					b.Logf("xdsserver built from %s", version)
				} else {
					b.Logf("xdsserver %s", bin)
				}
				s := &SluiceXDS{Bin: bin, Args: strings.Fields(os.Getenv("PEERBENCH_XDSSERVER_ARGS")),
					FullNode: os.Getenv("PEERBENCH_FULL_NODE") == "1", TLS: os.Getenv("PEERBENCH_TLS") == "1"}
				for range b.N {
					runXDS(b, nil, s, services, n, changes).report(b)
				}
			})
		}
	}
}

// memoryReader is a server under measurement that can tell its own
// runtime memory figures (Sluice's xdsserver; istiod's are not read).
type memoryReader interface {
	Memory(ctx context.Context) (map[string]uint64, error)
	WriteHeapProfile(ctx context.Context, path string) error
}

type xdsResult struct {
	took, spread []time.Duration // per change: change → last ACK, first receipt → last ACK
	cpu          time.Duration   // server, over the changes
	clientCPU    time.Duration   // this process (the clients), over the changes
	rss, hwm     int64
	connectHWM   int64         // server's peak RSS once every client had connected, before the changes
	connectBytes int64         // received by all clients until then
	connect      time.Duration // until every client had its routes
	resps, bytes int64         // received by all clients over the changes
	reconnects   int64         // streams reopened (istiod's rate limit), connection included
	n            int
	// idle and busy are the server's runtime figures (memoryReader)
	// before the first client and with every client connected; nil for a
	// server that cannot tell them.
	idle, busy map[string]uint64
	idleRSS    int64
}

func (r *xdsResult) report(b *testing.B) {
	slices.Sort(r.took)
	slices.Sort(r.spread)
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(msf(r.took[len(r.took)/2]), "ack-p50-ms")
	b.ReportMetric(msf(r.took[len(r.took)-1]), "ack-max-ms")
	b.ReportMetric(msf(r.spread[len(r.spread)/2]), "push-spread-p50-ms")
	b.ReportMetric(1000*r.cpu.Seconds()/float64(len(r.took)), "cpu-ms/change")
	b.ReportMetric(1000*r.clientCPU.Seconds()/float64(len(r.took)), "client-cpu-ms/change")
	b.ReportMetric(float64(r.rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(r.hwm)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(float64(r.connectHWM)/(1<<20), "connect-peak-rss-MiB")
	b.ReportMetric(r.connect.Seconds(), "connect-s")
	b.ReportMetric(float64(r.connectBytes)/float64(r.n)/1024, "connect-KiB/client")
	perClient := float64(r.n * len(r.took))
	b.ReportMetric(float64(r.resps)/perClient, "responses/client/change")
	b.ReportMetric(float64(r.bytes)/perClient/1024, "KiB/client/change")
	if r.busy != nil {
		per := func(k string) float64 { return (float64(r.busy[k]) - float64(r.idle[k])) / float64(r.n) }
		b.ReportMetric((float64(r.rss)-float64(r.idleRSS))/float64(r.n), "server-rss-B/stream")
		b.ReportMetric(per("heap_objects_bytes"), "server-heap-B/stream")
		b.ReportMetric(per("stack_bytes"), "server-stack-B/stream")
		b.ReportMetric(per("goroutines"), "server-goroutines/stream")
		b.ReportMetric(float64(r.busy["stack_start_bytes"]), "server-stack-start-B")
		b.ReportMetric(float64(r.busy["heap_goal_bytes"])/(1<<20), "server-heap-goal-MiB")
		b.Logf("server runtime, idle: %v; with %d clients: %v", r.idle, r.n, r.busy)
	}
	b.Logf("change → last ACK: %v; streams reopened: %d", r.took, r.reconnects)
}

func runXDS(b *testing.B, cfg *rest.Config, s XDSServer, services, n, changes int) *xdsResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()
	if cfg != nil {
		if _, err := DirectKubeconfig(cfg, dir); err != nil {
			b.Fatal(err)
		}
	}
	logs, err := keptLog(b, s.Name())
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	p, addr, err := s.Start(ctx, services, dir, logs)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(10 * time.Second)
	res := &xdsResult{n: n}
	mr, _ := s.(memoryReader)
	if mr != nil {
		if res.idle, err = mr.Memory(ctx); err != nil {
			b.Fatal(err)
		}
		u, err := ReadUsage(p.Pid())
		if err != nil {
			b.Fatal(err)
		}
		res.idleRSS = u.RSS
	}
	start := time.Now()
	var clientTLS *tls.Config
	if sx, ok := s.(*SluiceXDS); ok {
		clientTLS = sx.ClientTLS
	}
	fleet, err := StartFleet(ctx, addr, n, envInt(b, "PEERBENCH_STREAMS_PER_CONN", 100), clientTLS, s.Node, 10*time.Minute)
	if err != nil {
		b.Fatalf("%s: %v\nlast output:\n%s", s.Name(), err, p.Tail())
	}
	res.connect = time.Since(start)
	// Let the connection storm's pushes settle.
	time.Sleep(3 * time.Second)
	u0, err := ReadUsage(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	res.connectHWM = u0.HWM
	resps0, bytes0 := fleet.Traffic()
	res.connectBytes = bytes0
	self0, err := ReadUsage(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	for i := range changes {
		// Markers 10, 11, ... 89: never the initial 5/95, never repeated
		// back to back.
		w := int32(10 + i%80)
		fleet.Expect(w)
		t0 := time.Now()
		if err := s.Change(ctx, w); err != nil {
			b.Fatal(err)
		}
		first, last, err := fleet.Wait(ctx, 5*time.Minute)
		if err != nil {
			b.Fatalf("%s: change %d: %v\nlast output:\n%s", s.Name(), i, err, p.Tail())
		}
		res.took = append(res.took, last.Sub(t0))
		res.spread = append(res.spread, last.Sub(first))
		// Changes a second apart, as a rollout's steps would be at most.
		time.Sleep(time.Second)
	}
	u1, err := ReadUsage(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	self1, err := ReadUsage(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	res.cpu, res.rss, res.hwm, res.clientCPU = u1.CPU-u0.CPU, u1.RSS, u1.HWM, self1.CPU-self0.CPU
	resps1, bytes1 := fleet.Traffic()
	res.resps, res.bytes = resps1-resps0, bytes1-bytes0
	res.reconnects = fleet.Reconnects()
	// Read after the CPU figure: reading collects garbage first.
	if mr != nil {
		if res.busy, err = mr.Memory(ctx); err != nil {
			b.Fatal(err)
		}
		if path := os.Getenv("PEERBENCH_XDS_HEAPPROFILE"); path != "" {
			if err := mr.WriteHeapProfile(ctx, path); err != nil {
				b.Fatal(err)
			}
		}
	}
	return res
}

// envInts is a comma-separated list of positive numbers, or def.
func envInts(b *testing.B, name string, def []int) []int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q: want positive numbers separated by commas", name, s)
		}
		out = append(out, v)
	}
	return out
}
