package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// timed records how long each reconcile of the wrapped reconciler took.
type timed struct {
	reconcile.Reconciler
	mu   sync.Mutex
	took []time.Duration
}

func (t *timed) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := time.Now()
	res, err := t.Reconciler.Reconcile(ctx, req)
	d := time.Since(start)
	t.mu.Lock()
	t.took = append(t.took, d)
	t.mu.Unlock()
	return res, err
}

// BenchmarkThousandRollouts runs 1,000 Rollouts through a whole canary
// (20% → 1s pause → 60% → 1s pause → promoted) at once, in one manager
// against the real API server, with the data plane acknowledging every
// plan. It reports the latency of single reconciles (the goal is p99 ≤
// 100 ms) and the controller process's memory. Run it alone:
//
//	go test -run '^$' -bench ThousandRollouts -benchtime 1x ./kube/controller/
//
// SLUICE_BENCH_ROLLOUTS changes the number of Rollouts.
func BenchmarkThousandRollouts(b *testing.B) {
	n := 1000
	if s := os.Getenv("SLUICE_BENCH_ROLLOUTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("SLUICE_BENCH_ROLLOUTS: %v", err)
		}
	}
	restCfg, scheme := env.Start(b)
	// The API server, not client-side rate limits, should be what is
	// measured: a default client allows 20 requests a second.
	restCfg = rest.CopyConfig(restCfg)
	restCfg.QPS, restCfg.Burst = 2000, 4000
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		took, wall := runThousand(b, restCfg, c, n)
		slices.Sort(took)
		pct := func(p float64) float64 {
			return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(len(took))/float64(n), "reconciles/rollout")
		b.ReportMetric(wall.Seconds(), "rollout-s")
	}
	b.ReportMetric(rssMB(b), "rss-MB")
}

func runThousand(b *testing.B, restCfg *rest.Config, c client.Client, n int) ([]time.Duration, time.Duration) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sluice-bench-"}}
	if err := c.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:     c.Scheme(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:      cache.Options{ByObject: CacheByObject(), DefaultNamespaces: map[string]cache.Config{ns.Name: {}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	plane := newFakePlane()
	r := &Reconciler{Client: mgr.GetClient(), Recorder: &events{}, Publisher: plane, Acknowledger: plane,
		AckPollInterval: 100 * time.Millisecond, MaxConcurrentReconciles: 10}
	rec := &timed{Reconciler: r}
	if err := r.setup(mgr, rec); err != nil {
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

	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	// The kube-controller-manager's part: pods become available.
	go func() {
		for mctx.Err() == nil {
			markAvailable(b, c, ns.Name)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	waitAll(b, c, ns.Name, n, func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision != "" })

	// Only the rollout itself is measured, not the first deployment.
	rec.mu.Lock()
	rec.took = nil
	rec.mu.Unlock()
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
	waitAll(b, c, ns.Name, n, func(ro *v1alpha1.Rollout) bool {
		rev, err := engine.DesiredRevision(&ro.Spec)
		return err == nil && healthy(ro) && ro.Status.StableRevision == rev && ro.Status.CanaryRevision == ""
	})
	wall := time.Since(start)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		b.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.took) < n {
		b.Fatalf("%d reconciles for %d rollouts", len(rec.took), n)
	}
	return slices.Clone(rec.took), wall
}

func pauseFor(d time.Duration) v1alpha1.CanaryStep {
	return v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{Duration: &metav1.Duration{Duration: d}}}
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

// waitAll polls until done holds for n Rollouts of the namespace.
func waitAll(b *testing.B, c client.Client, ns string, n int, done func(*v1alpha1.Rollout) bool) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var list v1alpha1.RolloutList
		if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		ok := 0
		var late *v1alpha1.Rollout
		for i := range list.Items {
			if done(&list.Items[i]) {
				ok++
			} else {
				late = &list.Items[i]
			}
		}
		if ok == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d Rollouts done after 10 minutes; %s: phase %s, step %s: %s",
				ok, n, late.Name, late.Status.Phase, late.Status.StepDisplay, late.Status.Message)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// rssMB is the resident memory of this process (controller, clients and
// the benchmark's own bookkeeping; the API server and etcd run apart).
func rssMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Logf("no RSS: %v", err)
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err == nil {
				return float64(kb) / 1024
			}
		}
	}
	return 0
}
