// Command xdsserver is Sluice's xDS server (package xds, the one `sluice
// run` and `sluice controller` serve) as a process of its own, for
// peerbench's BenchmarkXDSSameClients: it serves the plans of -services
// services on -addr (plaintext, or TLS with -tls-cert and -tls-key) and
// publishes a new canary weight for one of them on each POST
// /weight?service=S&canary=W to -control, answering once Publish returned. GET /memory on -control answers the process's
// own memory figures after a collection (runtime/metrics: heap objects,
// goroutine stacks, goroutines), which RSS alone cannot split, and GET
// /heap a heap profile. It prints "xds ADDR control ADDR" when ready.
//
// It holds no logic of its own: the plans are what the engine would
// publish for a canary (two subsets, one weighted route per host).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/xds"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "xDS listen address (plaintext)")
	control := flag.String("control", "127.0.0.1:0", "control listen address")
	services := flag.Int("services", 4, "number of services (svc-000, svc-001, ...)")
	namespace := flag.String("namespace", "mesh", "namespace of the services' hosts (<svc>.<namespace>.svc.cluster.local)")
	canary := flag.Int("canary", 5, "initial canary weight of every service")
	cert := flag.String("tls-cert", "", "serve TLS with this certificate (PEM; with -tls-key)")
	key := flag.String("tls-key", "", "the key of -tls-cert (PEM)")
	rate := flag.Int("memprofilerate", 0, "runtime.MemProfileRate for GET /heap (0: the runtime's default)")
	flag.Parse()
	if *rate > 0 {
		runtime.MemProfileRate = *rate
	}
	var files *xds.TLSFiles
	if *cert != "" || *key != "" {
		files = &xds.TLSFiles{CertFile: *cert, KeyFile: *key}
	}
	if err := run(*addr, *control, *services, *namespace, int32(*canary), files); err != nil {
		fmt.Fprintln(os.Stderr, "xdsserver:", err)
		os.Exit(1)
	}
}

func run(addr, control string, n int, ns string, canary int32, files *xds.TLSFiles) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	eps := xds.NewStatic()
	names := make([]string, n)
	plans := make([]plan.Plan, n)
	for i := range n {
		names[i] = fmt.Sprintf("svc-%03d", i)
		// Two endpoints per revision, as istiod's side has two pods each.
		for r, rev := range []string{"v1", "v2"} {
			a := fmt.Sprintf("10.%d.%d.%d:9080", 1+i/250, i%250, 1+2*r)
			b := fmt.Sprintf("10.%d.%d.%d:9080", 1+i/250, i%250, 2+2*r)
			if err := eps.Set("", names[i], rev, a, b); err != nil {
				return err
			}
		}
		plans[i] = canaryPlan(names[i], ns, canary)
	}
	srv, err := xds.New(xds.Options{Endpoints: eps, TLS: files, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if err := srv.Publish(ctx, plans); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	clis, err := net.Listen("tcp", control)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	h := http.NewServeMux()
	h.HandleFunc("POST /weight", func(w http.ResponseWriter, r *http.Request) {
		svc := r.URL.Query().Get("service")
		c, err := strconv.Atoi(r.URL.Query().Get("canary"))
		i := indexOf(names, svc)
		if err != nil || c < 0 || c > 100 || i < 0 {
			http.Error(w, "want service=<known> and canary=0..100", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		plans[i] = canaryPlan(svc, ns, int32(c))
		start := time.Now()
		if err := srv.Publish(r.Context(), plans); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d\n", time.Since(start).Microseconds())
	})
	h.HandleFunc("GET /memory", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(readMemory())
	})
	h.HandleFunc("GET /heap", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		_ = pprof.Lookup("heap").WriteTo(w, 0)
	})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(clis) }()
	defer hs.Close()
	fmt.Printf("xds %s control %s\n", lis.Addr(), clis.Addr())
	return srv.Serve(ctx, lis)
}

// memorySamples are the runtime/metrics the benchmark splits RSS into,
// by the JSON name it reads them under.
var memorySamples = map[string]string{
	"heap_objects_bytes":  "/memory/classes/heap/objects:bytes",
	"stack_bytes":         "/memory/classes/heap/stacks:bytes",
	"goroutines":          "/sched/goroutines:goroutines",
	"stack_start_bytes":   "/gc/stack/starting-size:bytes",
	"heap_goal_bytes":     "/gc/heap/goal:bytes",
	"runtime_total_bytes": "/memory/classes/total:bytes",
	"heap_released_bytes": "/memory/classes/heap/released:bytes",
	"heap_free_bytes":     "/memory/classes/heap/free:bytes",
	"heap_unused_bytes":   "/memory/classes/heap/unused:bytes",
	"metadata_bytes":      "/memory/classes/metadata/other:bytes",
	"mspan_bytes":         "/memory/classes/metadata/mspan/inuse:bytes",
	"os_stack_bytes":      "/memory/classes/os-stacks:bytes",
	"other_bytes":         "/memory/classes/other:bytes",
	"profiling_bytes":     "/memory/classes/profiling/buckets:bytes",
}

// readMemory reads memorySamples after a collection, so that the heap is
// what is live, as the benchmark's per-stream figures need.
func readMemory() map[string]uint64 {
	runtime.GC()
	names := make([]string, 0, len(memorySamples))
	s := make([]metrics.Sample, 0, len(memorySamples))
	for k, m := range memorySamples {
		names = append(names, k)
		s = append(s, metrics.Sample{Name: m})
	}
	metrics.Read(s)
	out := make(map[string]uint64, len(s))
	for i, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			out[names[i]] = v.Value.Uint64()
		}
	}
	return out
}

func indexOf(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	return -1
}

// canaryPlan is the plan the engine publishes for a canary at weight c:
// stable v1 and canary v2, one host, one weighted route.
func canaryPlan(svc, ns string, c int32) plan.Plan {
	p := plan.Plan{
		Service: svc,
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: "v1"}, {Name: plan.Canary, Revision: "v2"}},
		Hosts: []plan.Host{{Name: svc + "." + ns + ".svc.cluster.local", Port: 9080, Routes: []plan.Route{{
			Name:         "primary",
			Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100 - c}, {Subset: plan.Canary, Weight: c}},
		}}}},
	}
	p.Seal()
	return p
}
