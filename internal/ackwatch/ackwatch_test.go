package ackwatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
)

// source is a data plane whose answer the test sets; every set closes the
// channel changed handed out, as xds.Server.StatusChanged does.
type source struct {
	mu    sync.Mutex
	dp    engine.DataPlane
	ch    chan struct{}
	looks int
	// lastLooked is the answer of the latest look.
	lastLooked engine.DataPlane
}

func newSource(dp engine.DataPlane) *source { return &source{dp: dp, ch: make(chan struct{})} }

func (s *source) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *source) look() engine.DataPlane {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.looks++
	s.lastLooked = s.dp
	return s.dp
}

func (s *source) set(dp engine.DataPlane) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dp = dp
	close(s.ch)
	s.ch = make(chan struct{})
}

// watch runs Watch on s until the test ends or Watch returns (done
// closes); wakes receives the time of each wake.
func watch(t *testing.T, s *source) (wakes chan time.Time, done chan struct{}, stop context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wakes, done = make(chan time.Time, 100), make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, s.changed, s.look, func() { wakes <- time.Now() })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return wakes, done, cancel
}

func pending(subscribed, acked int, silent ...engine.SilentNode) engine.DataPlane {
	return engine.DataPlane{Version: "v1", State: engine.AckPending, Subscribed: subscribed, Acked: acked, Silent: silent}
}

func mustWake(t *testing.T, wakes <-chan time.Time, what string) time.Time {
	t.Helper()
	select {
	case at := <-wakes:
		return at
	case <-time.After(5 * time.Second):
		t.Fatalf("no wake for %s", what)
		return time.Time{}
	}
}

func mustEnd(t *testing.T, done <-chan struct{}, after string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("Watch went on after %s", after)
	}
}

func noWake(t *testing.T, wakes <-chan time.Time, what string) {
	t.Helper()
	select {
	case <-wakes:
		t.Fatalf("woken for %s", what)
	case <-time.After(3 * MinInterval):
	}
}

// Each change of who subscribes, who applied the version and who is
// silent wakes the loop once; a change that moves none of them does not.
func TestWatchWakesOnProgress(t *testing.T) {
	t.Parallel()
	since := time.Unix(1700000000, 0)
	s := newSource(pending(2, 0))
	wakes, _, _ := watch(t, s)
	mustWake(t, wakes, "the first look, with subscribers")
	noWake(t, wakes, "nothing new")

	s.set(pending(2, 0)) // a change elsewhere: same answer
	noWake(t, wakes, "an unchanged answer")

	steps := []struct {
		what string
		dp   engine.DataPlane
	}{
		{"a node applied the version", pending(2, 1)},
		{"a node left it unanswered", pending(2, 1, engine.SilentNode{Name: "a", Since: since})},
		{"another silent node took its place", pending(2, 1, engine.SilentNode{Name: "b", Since: since.Add(time.Second)})},
		{"a new subscriber", pending(3, 1, engine.SilentNode{Name: "b", Since: since.Add(time.Second)})},
	}
	for _, st := range steps {
		s.set(st.dp)
		mustWake(t, wakes, st.what)
		noWake(t, wakes, st.what+", again")
	}
}

// A storm of changes wakes the loop at most once per MinInterval, and the
// last answer is always seen.
func TestWatchIsPaced(t *testing.T) {
	t.Parallel()
	s := newSource(pending(1000, 0))
	wakes, _, _ := watch(t, s)
	first := mustWake(t, wakes, "the first look")
	start := time.Now()
	for i := 1; i <= 500; i++ {
		s.set(pending(1000, i))
		time.Sleep(time.Millisecond)
	}
	storm := time.Since(start)
	// The last answer is seen after the storm.
	deadline := time.After(5 * time.Second)
	var times []time.Time
	for {
		select {
		case at := <-wakes:
			times = append(times, at)
			continue
		case <-time.After(3 * MinInterval):
		case <-deadline:
		}
		break
	}
	// Storm duration / MinInterval, plus the last look after it.
	if limit := int(storm/MinInterval) + 2; len(times) > limit || len(times) == 0 {
		t.Errorf("%d wakes during a %s storm of 500 changes, want 1 to %d", len(times), storm.Round(time.Millisecond), limit)
	}
	prev := first
	for _, at := range times {
		// Timers may fire a little early on a loaded machine; a tenth is
		// far from a wake per change.
		if gap := at.Sub(prev); gap < MinInterval*9/10 {
			t.Errorf("wakes %s apart, want at least %s", gap, MinInterval)
		}
		prev = at
	}
	s.mu.Lock()
	looks, last := s.looks, s.lastLooked
	s.mu.Unlock()
	if last.Acked != 500 {
		t.Errorf("the last look saw %d nodes acked, want 500: the last change was missed", last.Acked)
	}
	if limit := int(storm/MinInterval) + 4; looks > limit {
		t.Errorf("%d looks during a %s storm, want at most %d", looks, storm.Round(time.Millisecond), limit)
	}
}

// Watch never wakes for a version no node subscribes to, nor for one
// answered within MinInterval, and returns once the answer is final (the
// caller's wait reports that) or ctx ends.
func TestWatchEnds(t *testing.T) {
	t.Parallel()
	final := engine.DataPlane{Version: "v1", State: engine.AckAcknowledged, Subscribed: 2, Acked: 2}
	tests := []struct {
		name  string
		start engine.DataPlane
		// wait: whether the source stays at start past the first look.
		wait bool
	}{
		{"no subscriber, then the final answer", pending(0, 0), true},
		// Proxies that all answer within MinInterval cost no wake: the
		// caller's wait brings their final answer.
		{"answered at once", pending(2, 0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSource(tc.start)
			wakes, done, _ := watch(t, s)
			if tc.wait {
				noWake(t, wakes, "no subscriber")
			}
			s.set(final)
			mustEnd(t, done, "the final answer")
			noWake(t, wakes, "the final answer")
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		s := newSource(pending(1, 0))
		wakes, done, stop := watch(t, s)
		mustWake(t, wakes, "the first look")
		stop()
		mustEnd(t, done, "its context ended")
	})
}
