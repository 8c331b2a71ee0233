package peerbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluicehq/sluice/internal/testbin"
)

// env is the one API server of the package's benchmarks: every product
// runs against the same one, one after the other.
var env = NewEnv()

func TestMain(m *testing.M) {
	// The harness's clients log nothing worth keeping.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(env.Run(m))
}

// BenchmarkControllerSameWork runs the same work through Argo Rollouts
// and through Sluice's controller, one after the other, on one envtest
// kube-apiserver and etcd: n Rollouts (1,000 unless PEERBENCH_ROLLOUTS
// says otherwise), each with Istio VirtualService/DestinationRule canary
// routing, are deployed; then all get a new image at once and walk 20% →
// 1 s pause → 60% → 1 s pause → promoted → old revision scaled down 1 s
// later. The harness (World) plays the ReplicaSet controller and kubelet
// for both. Measured from the image change until every Rollout is
// promoted and scaled down: the time, the API requests at the API server
// (a counting proxy), the controller process's CPU time and peak RSS, and
// reconcile latency as each product exposes it.
//
//	make peers && go test -run '^$' -bench ControllerSameWork -benchtime 1x -count 3 -timeout 3h ./internal/peerbench/
//
// PEERBENCH_QPS=none turns off both controllers' client-side rate limits
// (default: each its own default, Argo Rollouts 40/80, Sluice 50/1,000).
func BenchmarkControllerSameWork(b *testing.B) {
	n := envInt(b, "PEERBENCH_ROLLOUTS", 1000)
	cfg, scheme := env.Start(b)
	var argoArgs []string
	var sluiceConfig string
	switch q := os.Getenv("PEERBENCH_QPS"); q {
	case "", "default":
	case "none":
		argoArgs = []string{"--qps=-1"}
		sluiceConfig = "kubeAPI:\n  qps: -1\n"
	default:
		b.Fatalf("PEERBENCH_QPS=%q: want default or none", q)
	}
	b.Logf("argo-rollouts %s", ToolModuleVersion("argo-rollouts", "github.com/argoproj/argo-rollouts"))
	for _, ctl := range []struct {
		name string
		make func(*testing.B) Controller
	}{
		{"argo-rollouts", func(b *testing.B) Controller {
			return Argo{Bin: peerBinary(b, "rollouts-controller"), Args: argoArgs}
		}},
		{"sluice", func(b *testing.B) Controller { return Sluice{Bin: sluiceBinary(b), Config: sluiceConfig} }},
	} {
		b.Run(ctl.name, func(b *testing.B) {
			c := ctl.make(b)
			for range b.N {
				runController(b, cfg, scheme, c, n).report(b, n)
			}
		})
	}
}

// controllerResult is what one run measured, from the image change until
// every Rollout was done.
type controllerResult struct {
	wall      time.Duration
	requests  map[string]int
	cpu       time.Duration // the controller process
	apiserver time.Duration // kube-apiserver and etcd
	hwm, rss  int64
	latency   Latency
}

func (r *controllerResult) report(b *testing.B, n int) {
	per := func(v float64) float64 { return v / float64(n) }
	b.ReportMetric(r.wall.Seconds(), "rollout-s")
	total := 0
	byVerb := ByVerb(r.requests)
	for _, v := range Verbs {
		b.ReportMetric(per(float64(byVerb[v])), strings.ToLower(v)+"/rollout")
		if v != "WATCH" {
			total += byVerb[v]
		}
	}
	b.ReportMetric(per(float64(total)), "req/rollout")
	b.ReportMetric(1000*per(r.cpu.Seconds()), "cpu-ms/rollout")
	b.ReportMetric(1000*per(r.apiserver.Seconds()), "apiserver-cpu-ms/rollout")
	b.ReportMetric(float64(r.hwm)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(per(float64(r.latency.N)), "reconciles/rollout")
	b.ReportMetric(r.latency.P50, "reconcile-p50-ms")
	b.ReportMetric(r.latency.P99, "reconcile-p99-ms")
	b.Logf("requests during the rollout (kind count (per rollout)): %s", Table(r.requests, n))
	b.Logf("reconcile latency from %s; RSS at the end %.0f MiB", r.latency.Source, float64(r.rss)/(1<<20))
}

func runController(b *testing.B, cfg *rest.Config, scheme *runtime.Scheme, ctl Controller, n int) *controllerResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := client.New(unlimited(cfg), client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{ArgoNamespace, "sluice-system"} {
		if err := client.IgnoreAlreadyExists(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})); err != nil {
			b.Fatal(err)
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "peer-" + ctl.Name() + "-"}}
	if err := admin.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	defer cleanup(b, admin, ns.Name)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%04d", i)
	}
	parallel(b, names, func(name string) error {
		for _, obj := range ctl.Objects(ns.Name, name, "app:v1") {
			if err := admin.Create(ctx, obj); err != nil {
				return err
			}
		}
		return nil
	})

	w, err := StartWorld(ctx, cfg, scheme, ns.Name, 100*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	proxy, err := NewAPIProxy(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.Close()
	dir := b.TempDir()
	kubeconfig, err := proxy.Kubeconfig(dir, ArgoNamespace)
	if err != nil {
		b.Fatal(err)
	}
	logs, err := keptLog(b, ctl.Name())
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	p, err := ctl.Start(ctx, kubeconfig, dir, logs)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(10 * time.Second)
	wait := func(image string, timeout time.Duration) {
		b.Helper()
		err := w.WaitAll(ctx, n, timeout, ctl.RolloutList(), AppLabel, func(obj client.Object, rs []*appsv1.ReplicaSet) (bool, string) {
			return ctl.Done(obj, rs, image)
		})
		if ok, perr := p.Exited(); ok {
			b.Fatalf("%s exited (%v):\n%s", ctl.Name(), perr, p.Tail())
		}
		if err != nil {
			b.Fatalf("%s: %v\nlast output:\n%s", ctl.Name(), err, p.Tail())
		}
	}
	wait("app:v1", 15*time.Minute)
	// Let the first deployment's tail (events, resyncs) pass.
	time.Sleep(3 * time.Second)

	apiPids := append(ChildrenNamed("kube-apiserver"), ChildrenNamed("etcd")...)
	measure, err := ctl.Measure(ctx, p)
	if err != nil {
		b.Fatal(err)
	}
	proxy.Reset()
	u0, err := ReadUsage(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	api0 := CPUOf(apiPids)
	start := time.Now()
	parallel(b, names, func(name string) error { return ctl.SetImage(ctx, admin, ns.Name, name, "app:v2") })
	wait("app:v2", 30*time.Minute)
	res := &controllerResult{wall: time.Since(start), requests: proxy.Counts(), apiserver: CPUOf(apiPids) - api0}
	u1, err := ReadUsage(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	res.cpu, res.hwm, res.rss = u1.CPU-u0.CPU, u1.HWM, u1.RSS
	if res.latency, err = measure(); err != nil {
		b.Fatal(err)
	}
	return res
}

// keptLog creates a log file for a product's output that outlives the
// benchmark: in $PEERBENCH_LOGDIR, else a new folder under the system's
// temporary one, named in the benchmark's log.
func keptLog(b *testing.B, name string) (*os.File, error) {
	dir := os.Getenv("PEERBENCH_LOGDIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "peerbench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, name+"-*.log")
	if err == nil {
		b.Logf("%s's output: %s", name, f.Name())
	}
	return f, err
}

// unlimited is a copy of cfg without a client-side rate limit: the
// harness's own requests are not what is measured.
func unlimited(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = -1
	return cfg
}

// sluiceBinary builds sluice from this tree (once per process).
func sluiceBinary(b *testing.B) string {
	bin, version, err := BuildSluice(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("sluice built from %s", version)
	return bin
}

// peerBinary is the path of a peer's binary in bin/, skipping the
// benchmark (failing under CI=true) when `make peers` has not built it.
func peerBinary(b *testing.B, name string) string {
	dir := testbin.Dir(b)
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		testbin.SkipOrFail(b, fmt.Sprintf("%s is missing: run `make peers` (or `make bench-peers`)", p))
	}
	return p
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// parallel calls do for every name, 16 at a time, and fails on the first
// error.
func parallel(b *testing.B, names []string, do func(string) error) {
	b.Helper()
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for name := range work {
				if err := do(name); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}
