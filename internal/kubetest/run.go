package kubetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// runWait bounds how long Start waits for a cache to sync and for a
// runnable to return once stopped: far more than either takes against
// envtest, and far less than go test's own timeout, so a runnable that
// hangs fails its test by name instead of the whole package's run.
const runWait = time.Minute

// Start runs r (a manager, a cache, a server: anything that runs until its
// context ends) until the test ends or the returned stop is called. stop
// cancels r's context and waits for r to return; an error other than that
// cancellation fails the test, named by name. stop may be called more
// than once, and from a test that stops r early (a replica killed
// mid-rollout). When r is a cache or has one (a manager), Start returns
// once the cache has synced, so that a test acts on a cache that already
// holds what the API server does.
func Start(t testing.TB, name string, r manager.Runnable) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	return start(t, name, ctx, cancel, r)
}

// RunManager runs a controller-runtime manager against cfg, as `sluice
// controller` runs one (leader election aside), under Start's rules.
// setup adds what the test exercises (controllers, runnables) before the
// manager starts; its context ends when the manager stops, for parts that
// take one. Two options every test would otherwise repeat have test
// defaults: no metrics listener (BindAddress "0"), and no check that
// controller names are unique, since a package's tests start manager after
// manager in one process with the same controllers.
func RunManager(t testing.TB, cfg *rest.Config, opts manager.Options, setup func(context.Context, manager.Manager) error) (stop func()) {
	t.Helper()
	if opts.Metrics.BindAddress == "" {
		opts.Metrics.BindAddress = "0"
	}
	if opts.Controller.SkipNameValidation == nil {
		opts.Controller.SkipNameValidation = ptr.To(true)
	}
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		t.Fatalf("kubetest: new manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := setup(ctx, mgr); err != nil {
		cancel()
		t.Fatalf("kubetest: set up manager: %v", err)
	}
	return start(t, "manager", ctx, cancel, mgr)
}

// start runs r on ctx, which cancel ends; see Start.
func start(t testing.TB, name string, ctx context.Context, cancel context.CancelFunc, r manager.Runnable) (stop func()) {
	t.Helper()
	var err error
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		err = r.Start(ctx)
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case <-exited:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(runWait):
			t.Errorf("%s: still running %s after it was stopped", name, runWait)
		}
	})
	// A failing test must not leave r running against the shared API
	// server, nor its goroutines behind for the next test.
	t.Cleanup(stop)
	c := cacheOf(r)
	if c == nil {
		return stop
	}
	// A runnable that fails before its cache starts would leave
	// WaitForCacheSync waiting for a start that never comes.
	syncCtx, syncCancel := context.WithTimeout(ctx, runWait)
	defer syncCancel()
	go func() {
		select {
		case <-exited:
			syncCancel()
		case <-syncCtx.Done():
		}
	}()
	if !c.WaitForCacheSync(syncCtx) {
		stop() // reports why r returned, if it did
		t.Fatalf("%s: the cache did not sync within %s", name, runWait)
	}
	return stop
}

// cacheOf is the cache Start waits for: r's own, or r itself.
func cacheOf(r manager.Runnable) interface{ WaitForCacheSync(context.Context) bool } {
	switch r := r.(type) {
	case interface{ GetCache() cache.Cache }:
		return r.GetCache()
	case interface{ WaitForCacheSync(context.Context) bool }:
		return r
	}
	return nil
}
