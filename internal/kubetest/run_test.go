package kubetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeT is a testing.TB that records failures and cleanups instead of
// acting on them, so a test can see what Start reports and when.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	fatal    string
	cleanups []func()
}

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatal = fmt.Sprintf(format, args...)
}

func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// end runs the cleanups, last first, as the end of a test does.
func (f *fakeT) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// runnable runs until its context ends, then returns err after a moment:
// a stop that did not wait would see it still running.
type runnable struct {
	err     error
	started chan struct{}
	mu      sync.Mutex
	ended   bool
}

func newRunnable(err error) *runnable { return &runnable{err: err, started: make(chan struct{})} }

func (r *runnable) Start(ctx context.Context) error {
	close(r.started)
	<-ctx.Done()
	time.Sleep(20 * time.Millisecond)
	r.mu.Lock()
	r.ended = true
	r.mu.Unlock()
	return r.err
}

func (r *runnable) hasEnded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

// syncing is a cache: it has synced once started, unless it fails first.
type syncing struct {
	failAtOnce error
	started    chan struct{}
}

func (s *syncing) Start(ctx context.Context) error {
	if s.failAtOnce != nil {
		return s.failAtOnce
	}
	close(s.started)
	<-ctx.Done()
	return nil
}

func (s *syncing) WaitForCacheSync(ctx context.Context) bool {
	select {
	case <-s.started:
		return true
	case <-ctx.Done():
		return false
	}
}

// Stopping waits until the runnable has returned, and fails the test for
// an error of its own but not for the cancellation that stopped it;
// stopping twice (by hand, then at the test's end) stops once.
func TestStartStopsAndChecksTheError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"clean stop", nil, ""},
		{"stopped by its context", context.Canceled, ""},
		{"wrapped cancellation", fmt.Errorf("informer: %w", context.Canceled), ""},
		{"failed", errors.New("lost the lease"), "replica a: lost the lease"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := &fakeT{TB: t}
			r := newRunnable(tc.err)
			stop := Start(ft, "replica a", r)
			<-r.started
			if r.hasEnded() {
				t.Fatal("ended before it was stopped")
			}
			stop()
			if !r.hasEnded() {
				t.Error("stop returned before the runnable did")
			}
			ft.end()
			want := []string(nil)
			if tc.wantErr != "" {
				want = []string{tc.wantErr}
			}
			if fmt.Sprint(ft.errors) != fmt.Sprint(want) {
				t.Errorf("errors %q, want %q", ft.errors, want)
			}
		})
	}
}

// The test's end stops a runnable the test did not stop itself.
func TestStartStopsAtTheEndOfTheTest(t *testing.T) {
	t.Parallel()
	ft := &fakeT{TB: t}
	r := newRunnable(nil)
	Start(ft, "cache", r)
	<-r.started
	ft.end()
	if !r.hasEnded() {
		t.Error("still running after the test ended")
	}
}

// Start returns once a cache has synced; a cache that fails before it
// syncs fails the test at once, with its error, rather than after the
// sync bound.
func TestStartWaitsForTheCache(t *testing.T) {
	t.Parallel()
	ft := &fakeT{TB: t}
	c := &syncing{started: make(chan struct{})}
	stop := Start(ft, "cache", c)
	select {
	case <-c.started:
	default:
		t.Error("Start returned before the cache synced")
	}
	stop()
	if ft.fatal != "" || len(ft.errors) > 0 {
		t.Errorf("a cache that synced failed the test: %q %q", ft.fatal, ft.errors)
	}

	ft = &fakeT{TB: t}
	began := time.Now()
	Start(ft, "cache", &syncing{failAtOnce: errors.New("no RBAC to list pods")})
	if took := time.Since(began); took > runWait/2 {
		t.Errorf("Start took %s to notice the cache had failed", took)
	}
	if !strings.Contains(ft.fatal, "did not sync") || fmt.Sprint(ft.errors) != "[cache: no RBAC to list pods]" {
		t.Errorf("fatal %q, errors %q: want the sync failure and the cache's error", ft.fatal, ft.errors)
	}
}
