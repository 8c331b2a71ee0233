package controller

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// timed records how long each reconcile of the wrapped reconciler took,
// and how it ended: the ends that ask for another reconcile explain part
// of the reconciles per Rollout.
type timed struct {
	reconcile.Reconciler
	mu       sync.Mutex
	took     []time.Duration
	own      []time.Duration // took less the time in API requests
	requeued int             // ended with RequeueAfter
	failed   int             // ended with an error (requeued with backoff)
}

func (t *timed) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := time.Now()
	api := new(atomic.Int64)
	res, err := t.Reconciler.Reconcile(context.WithValue(ctx, apiTimeKey{}, api), req)
	d := time.Since(start)
	t.mu.Lock()
	t.took = append(t.took, d)
	t.own = append(t.own, d-time.Duration(api.Load()))
	switch {
	case err != nil:
		t.failed++
	case res.RequeueAfter > 0:
		t.requeued++
	}
	t.mu.Unlock()
	return res, err
}

// reset forgets what was recorded so far.
func (t *timed) reset() {
	t.mu.Lock()
	t.took, t.own, t.requeued, t.failed = nil, nil, 0, 0
	t.mu.Unlock()
}

// BenchmarkThousandRollouts runs 1,000 Rollouts through a whole canary
// (20% → 1s pause → 60% → 1s pause → promoted → old revision scaled down
// 1s later) at once, in one manager against the real API server, with the
// data plane acknowledging every plan. It reports the latency of single reconciles (the goal is p99 ≤
// 100 ms), the work behind each (API requests by verb, client-side
// rate-limiter waits, CPU and allocations of the whole process) and the
// process's memory. Run it alone:
//
//	go test -run '^$' -bench ThousandRollouts -benchtime 1x ./kube/controller/
//
// SLUICE_BENCH_ROLLOUTS changes the number of Rollouts; SLUICE_BENCH_QPS
// ("qps/burst", "-1" for none) the manager's client-side rate limit.
func BenchmarkThousandRollouts(b *testing.B) {
	n := 1000
	if s := os.Getenv("SLUICE_BENCH_ROLLOUTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("SLUICE_BENCH_ROLLOUTS: %v", err)
		}
	}
	restCfg, scheme := env.Start(b)
	be := benchEnv{manager: restCfg, own: rest.CopyConfig(restCfg)}
	be.qps, be.burst = benchRateLimit(b)
	// The benchmark's own clients (the world, the rollout's trigger) have
	// no rate limiter, so that every limiter wait measured is the
	// manager's.
	be.own.QPS = -1
	var err error
	if be.c, err = client.New(be.own, client.Options{Scheme: scheme}); err != nil {
		b.Fatal(err)
	}
	enableRateLimiterMetric()
	for range b.N {
		res := runThousand(b, be, n)
		res.report(b, n)
	}
	b.ReportMetric(rssMB(b), "rss-MB")
}

// benchRateLimit is the manager's client-side rate limit: by default none,
// so that the controller and the API server are what is measured.
func benchRateLimit(b *testing.B) (float32, int) {
	s := os.Getenv("SLUICE_BENCH_QPS")
	if s == "" {
		return -1, 0
	}
	q, bu, _ := strings.Cut(s, "/")
	qps, err := strconv.ParseFloat(q, 32)
	burst := 0
	if err == nil && bu != "" {
		burst, err = strconv.Atoi(bu)
	}
	if err != nil {
		b.Fatalf("SLUICE_BENCH_QPS %q: want qps/burst: %v", s, err)
	}
	return float32(qps), burst
}

// benchEnv is where the benchmark runs.
type benchEnv struct {
	manager *rest.Config // the manager's, before rate limit and counting
	own     *rest.Config // the benchmark's own, without a rate limiter
	c       client.Client
	qps     float32 // the manager's client-side rate limit
	burst   int
}

// benchResult is what one run measured, from the moment every Rollout
// got its new image until all were promoted and their old revisions
// scaled down.
type benchResult struct {
	took              []time.Duration
	own               []time.Duration
	wall              time.Duration
	requeued, failed  int
	requests          map[string][]time.Duration
	used              usage
	limited           time.Duration // waited for client-side rate limiters
	rsSpec, rsStatus  int           // ReplicaSet updates seen by the manager's informer
	rsCreated, rsGone int
	events            int // Kubernetes Events emitted (each one a request of the recorder's own)
}

func (r *benchResult) report(b *testing.B, n int) {
	took := slices.Sorted(slices.Values(r.took))
	rec := float64(len(took))
	b.ReportMetric(ms(percentile(took, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(took, 0.90)), "p90-ms")
	b.ReportMetric(ms(percentile(took, 0.99)), "p99-ms")
	// The reconcile without its waits for the API server: what the
	// controller itself adds, whatever the API server's latency.
	own := slices.Sorted(slices.Values(r.own))
	b.ReportMetric(ms(percentile(own, 0.50)), "own-p50-ms")
	b.ReportMetric(ms(percentile(own, 0.99)), "own-p99-ms")
	b.ReportMetric(rec/float64(n), "reconciles/rollout")
	b.ReportMetric(r.wall.Seconds(), "rollout-s")
	b.ReportMetric(ms(r.used.cpu)/rec, "cpu-ms/reconcile")
	b.ReportMetric(float64(r.used.mallocs)/rec, "allocs/reconcile")
	b.ReportMetric(float64(r.used.heap)/1024/rec, "alloc-KiB/reconcile")
	b.ReportMetric(ms(r.limited)/rec, "ratelimit-ms/reconcile")
	b.ReportMetric(float64(r.events)/float64(n), "events/rollout")
	perReconcile(b, r.requests, len(took))
	b.Logf("per Rollout: %.2f reconciles, %.2f ended with RequeueAfter, %.2f with an error; "+
		"ReplicaSet events: %.2f created, %.2f spec or metadata updates, %.2f status-only updates, %.2f deleted",
		rec/float64(n), float64(r.requeued)/float64(n), float64(r.failed)/float64(n),
		float64(r.rsCreated)/float64(n), float64(r.rsSpec)/float64(n), float64(r.rsStatus)/float64(n), float64(r.rsGone)/float64(n))
}

func runThousand(b *testing.B, be benchEnv, n int) *benchResult {
	ctx := context.Background()
	count := newAPICounter()
	restCfg, c := managerRestConfig(be.manager, be.qps, be.burst, count), be.c
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sluice-bench-"}}
	if err := c.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	steps := []v1alpha1.CanaryStep{setWeight(20), pauseFor(time.Second), setWeight(60), pauseFor(time.Second)}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%04d", i)
	}
	parallel(b, names, func(name string) error {
		return c.Create(ctx, newRollout(ns.Name, name, "app:v1", steps...))
	})

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := startWorld(wctx, b, be.own, c, ns.Name)
	plane := newFakePlane()
	ev := &events{}
	var rec *timed
	var rsSeen *rsEvents // ReplicaSet events the manager's informer saw
	stop := kubetest.RunManager(b, restCfg, manager.Options{
		Scheme: c.Scheme(),
		Cache:  cache.Options{ByObject: CacheByObject(), DefaultNamespaces: map[string]cache.Config{ns.Name: {}}},
	}, func(_ context.Context, mgr manager.Manager) error {
		r := &Reconciler{Client: mgr.GetClient(), Recorder: ev, Publisher: plane, Acknowledger: plane,
			AckPollInterval: 100 * time.Millisecond, MaxConcurrentReconciles: 10}
		rec = &timed{Reconciler: r}
		rsSeen = watchReplicaSets(b, mgr)
		return r.setup(mgr, rec)
	})
	w.waitAll(b, n, func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision != "" })

	// Only the rollout itself is measured, not the first deployment.
	rec.reset()
	rsSeen.reset()
	ev.mu.Lock()
	ev.list = nil
	ev.mu.Unlock()
	count.reset()
	limited, _ := rateLimiterWait(b)
	used := usageNow(b)
	start := time.Now()
	parallel(b, names, func(name string) error {
		ro := &v1alpha1.Rollout{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: name}, ro); err != nil {
			return err
		}
		patched := ro.DeepCopy()
		patched.Spec.Template.Spec.Containers[0].Image = "app:v2"
		return c.Patch(ctx, patched, client.MergeFrom(ro))
	})
	w.waitAll(b, n, func(ro *v1alpha1.Rollout) bool {
		rev, err := engine.DesiredRevision(&ro.Spec)
		return err == nil && healthy(ro) && ro.Status.StableRevision == rev && ro.Status.CanaryRevision == "" &&
			ro.Status.ScaleDown == nil
	})
	res := &benchResult{wall: time.Since(start), used: used.since(b), requests: count.requests()}
	res.limited, _ = rateLimiterWait(b)
	res.limited -= limited
	res.rsCreated, res.rsSpec, res.rsStatus, res.rsGone = rsSeen.get()
	res.events = len(ev.all())
	stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.took) < n {
		b.Fatalf("%d reconciles for %d rollouts", len(rec.took), n)
	}
	res.took, res.own, res.requeued, res.failed = slices.Clone(rec.took), slices.Clone(rec.own), rec.requeued, rec.failed
	return res
}
