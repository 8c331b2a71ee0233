// Package poll waits in tests for what happens on its own time (a
// controller's write, a proxy's ACK, a delivery) by asking again and
// again. Its bounds only keep a broken test from hanging: a passing test
// never comes near them, and nothing here measures speed.
package poll

import (
	"testing"
	"time"
)

const (
	// Timeout is Until's bound: generous, so that a slow or loaded machine
	// (-race, parallel tests against one API server) never fails a test
	// whose condition does come true.
	Timeout = 30 * time.Second
	// Interval is how often Until and Within ask: often enough that a test
	// waits little past the moment its condition holds, seldom enough not
	// to load what cond reads.
	Interval = 20 * time.Millisecond
)

// Until fails t unless cond holds within Timeout, asking every Interval;
// what names the condition in the failure. Call it from the test's
// goroutine, as t.Fatal requires.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Timeout, what, cond)
}

// Within is Until with a bound of the caller's.
func Within(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Holds(timeout, Interval, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Holds asks cond every interval until it holds or timeout has passed,
// and reports whether it held. It is for callers whose failure message
// shows the state they waited on, which only they know how to describe.
func Holds(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}
