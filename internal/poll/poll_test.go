package poll

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of ending the
// goroutine, so a test can look at what Within reported.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

// after is a condition that holds from its nth call on, and counts calls.
type after struct{ n, calls int }

func (a *after) cond() bool { a.calls++; return a.calls >= a.n }

func TestHolds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		holdsFrom int // 0: never
		timeout   time.Duration
		want      bool
		minCalls  int
	}{
		{"at once", 1, time.Second, true, 1},
		{"on the fifth ask", 5, 10 * time.Second, true, 5},
		{"never", 0, 100 * time.Millisecond, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := &after{n: tc.holdsFrom}
			if tc.holdsFrom == 0 {
				a.n = int(^uint(0) >> 1)
			}
			if got := Holds(tc.timeout, time.Millisecond, a.cond); got != tc.want {
				t.Fatalf("Holds = %v, want %v", got, tc.want)
			}
			if a.calls < tc.minCalls || (tc.want && a.calls != tc.holdsFrom) {
				t.Errorf("cond asked %d times, want %d", a.calls, max(tc.holdsFrom, tc.minCalls))
			}
		})
	}
}

// Within fails naming what it waited for and for how long, and only
// when the condition never held.
func TestWithinFailsOnlyWhenTheConditionNeverHolds(t *testing.T) {
	t.Parallel()
	held := &recorder{TB: t}
	Within(held, time.Second, "the fifth ask", (&after{n: 5}).cond)
	if held.failed != "" {
		t.Errorf("a condition that held failed: %s", held.failed)
	}
	never := &recorder{TB: t}
	Within(never, 50*time.Millisecond, "the plan in force", func() bool { return false })
	if !strings.Contains(never.failed, "the plan in force") || !strings.Contains(never.failed, "50ms") {
		t.Errorf("failure %q does not name what and how long", never.failed)
	}
}
