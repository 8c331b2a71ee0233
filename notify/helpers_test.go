package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// t0 is in +01:00 so the tests see payload times converted to UTC.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))

// received is one request a receiver got.
type received struct {
	body   []byte
	header http.Header
	// remote is the client's address: one per connection.
	remote string
}

// message is the event message of a webhook body.
func (r received) message(t testing.TB) string {
	t.Helper()
	var p WebhookPayload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return p.Event.Message
}

// receiver is a webhook endpoint on 127.0.0.1 that records what it gets and
// answers with respond (200 when nil). n counts requests from 0.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []received
	arrived chan received // every request, for tests that wait on one
	respond func(n int, w http.ResponseWriter, r *http.Request)
	// conns counts the client connections open now.
	conns atomic.Int64
}

func newReceiver(t testing.TB, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{arrived: make(chan received, 1024), respond: respond}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		got := received{body: b, header: r.Header.Clone(), remote: r.RemoteAddr}
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, got)
		rc.mu.Unlock()
		rc.arrived <- got
		if rc.respond != nil {
			rc.respond(n, w, r)
		}
	}))
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			rc.conns.Add(1)
		case http.StateHijacked, http.StateClosed:
			rc.conns.Add(-1)
		}
	}
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// next waits for the next request; the bound only keeps a broken test
// from hanging.
func (rc *receiver) next(t testing.TB) received {
	t.Helper()
	select {
	case r := <-rc.arrived:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no request arrived")
		return received{}
	}
}

// sleeper records the waits asked for and returns at once.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// testOptions: a fixed clock, instant sleeps, IDs id-1, id-2, ... and a
// private registry.
func testOptions(s *sleeper) Options {
	var ids atomic.Int64
	return Options{
		Registerer: prometheus.NewRegistry(),
		Now:        func() time.Time { return t0 },
		Sleep:      s.sleep,
		NewID:      func() string { return fmt.Sprintf("id-%d", ids.Add(1)) },
	}
}

func newNotifier(t testing.TB, targets []Target, opts Options) *Notifier {
	t.Helper()
	nf, err := New(targets, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // whatever a test left behind is abandoned
		_ = nf.Close(ctx)
	})
	return nf
}

// closeAll flushes; a notifier that cannot flush within the bound is a
// failure, not a slow pass.
func closeAll(t testing.TB, nf *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nf.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func metric(t testing.TB, nf *Notifier, name, target string) float64 {
	t.Helper()
	vecs := map[string]*prometheus.CounterVec{
		"sent": nf.m.sent, "failed": nf.m.failed, "dropped": nf.m.dropped, "retries": nf.m.retries,
	}
	if name == "queued" {
		return testutil.ToFloat64(nf.m.queued.WithLabelValues(target))
	}
	return testutil.ToFloat64(vecs[name].WithLabelValues(target))
}

func note(reason string, typ engine.EventType, msg string) Notification {
	return Notification{Rollout: "reviews", Type: typ, Reason: reason, Message: msg, Time: t0}
}

func step(msg string) Notification {
	return note(v1alpha1.ReasonStepAdvanced, engine.EventNormal, msg)
}

// logBuffer collects log lines; workers log from their own goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		fmt.Fprintln(&l.b, prefix, args)
	}, funcr.Options{Verbosity: 1})
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
