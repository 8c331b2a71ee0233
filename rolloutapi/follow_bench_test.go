package rolloutapi

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkFollowLatency measures how long a change the Backend signals
// takes to reach a Client following the event stream over HTTP: what
// `sluice status -w` waits before it reads again (it polled every second
// before the stream). Each iteration waits out the stream's minimum gap
// first, so it measures a lone change, not the merging of a burst.
func BenchmarkFollowLatency(b *testing.B) {
	mb := &memBackend{rollouts: map[string]Rollout{}}
	wb := &watchBackend{memBackend: mb, changed: make(chan struct{})}
	tok, err := ParseToken("bench", "bench", RoleRead, HashToken("bench-token"))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(wb, HandlerOptions{Tokens: []Token{tok}}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := (&Client{BaseURL: srv.URL, Token: "bench-token"}).Follow(ctx, "", "")
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		time.Sleep(watchMinGap + 5*time.Millisecond)
		b.StartTimer()
		start := time.Now()
		wb.signal()
		if _, ok := <-changes; !ok {
			b.Fatal("the stream ended")
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/change")
}
