package rolloutapi

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"
)

// TestLive: a Live over a server's event stream closes Changed at each
// change the server signals, with a poll so long that nothing else could
// close it; when the stream breaks it says so and pages read again; over
// a server that cannot stream it falls back to closing Changed every
// poll.
func TestLive(t *testing.T) {
	t.Parallel()
	mb, _ := serve(t, "")
	wb := &watchBackend{memBackend: mb, changed: make(chan struct{})}
	streaming := httptest.NewServer(NewHandler(wb, HandlerOptions{Tokens: []Token{testToken(t, "dashboard", RoleRead, "read-only")}}))
	t.Cleanup(streaming.Close)
	// A Backend that is no Watcher: its server answers the watch 404.
	polling := httptest.NewServer(NewHandler(mb, HandlerOptions{Tokens: []Token{testToken(t, "dashboard", RoleRead, "read-only")}}))
	t.Cleanup(polling.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// closes waits for ch to be closed; the bound guards against a hang
	// and measures nothing.
	closes := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: Changed was not closed", what)
		}
	}
	// following waits until l's stream is open (want) or not.
	following := func(l *Live, want bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); l.Following() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("following: %v, want %v", !want, want)
			}
		}
	}

	c := &Client{BaseURL: streaming.URL, Token: "read-only"}
	live := NewLive(ctx, c, c, time.Hour)
	following(live, true)
	for i := range 3 {
		ch := live.Changed()
		select {
		case <-ch:
			t.Fatalf("change %d: Changed closed before the server signalled", i)
		case <-time.After(100 * time.Millisecond):
		}
		wb.signal()
		closes("a change the server signalled", ch)
		// The stream spaces its events out; let the gap pass.
		time.Sleep(2 * watchMinGap)
	}
	if ro, err := live.Get(ctx, "default", "reviews"); err != nil || ro.Name != "reviews" {
		t.Errorf("Get through the Live: %+v, %v", ro, err)
	}
	// The server goes away: the stream's end is a change (read again),
	// and no stream is open after it.
	ch := live.Changed()
	streaming.CloseClientConnections()
	streaming.Close()
	closes("the stream's end", ch)
	following(live, false)

	pc := &Client{BaseURL: polling.URL, Token: "read-only"}
	fallback := NewLive(ctx, pc, pc, 10*time.Millisecond)
	for range 3 {
		closes("a poll without a stream", fallback.Changed())
	}
	if fallback.Following() {
		t.Error("following a server that cannot stream")
	}
}
