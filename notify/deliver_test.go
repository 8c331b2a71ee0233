package notify

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
)

// answer is one scripted response.
type answer struct {
	code       int
	retryAfter string
}

// wait is an expected backoff: exactly d, or within [lo, hi].
type wait struct{ lo, hi time.Duration }

func exactly(d time.Duration) wait { return wait{d, d} }

func TestRetries(t *testing.T) {
	t.Parallel()
	s := time.Second
	// BaseBackoff 1s, MaxBackoff 4s: waits are drawn from [d/2, d].
	b1, b2, b4 := wait{s / 2, s}, wait{s, 2 * s}, wait{2 * s, 4 * s}
	cases := []struct {
		name        string
		answers     []answer // the last one repeats
		maxAttempts int
		wantSent    float64
		wantWaits   []wait
	}{
		{name: "500 then success", answers: []answer{{code: 500}, {code: 200}}, wantSent: 1, wantWaits: []wait{b1}},
		{name: "backoff doubles up to the cap", answers: []answer{{code: 500}, {code: 502}, {code: 504}, {code: 500}, {code: 204}},
			maxAttempts: 5, wantSent: 1, wantWaits: []wait{b1, b2, b4, b4}},
		{name: "408 is retried", answers: []answer{{code: 408}, {code: 200}}, wantSent: 1, wantWaits: []wait{b1}},
		{name: "429 Retry-After seconds", answers: []answer{{429, "7"}, {code: 200}}, wantSent: 1, wantWaits: []wait{exactly(7 * s)}},
		{name: "503 Retry-After date", answers: []answer{{503, t0.Add(30 * s).UTC().Format(http.TimeFormat)}, {code: 200}},
			wantSent: 1, wantWaits: []wait{exactly(30 * s)}},
		{name: "503 Retry-After in the past", answers: []answer{{503, t0.Add(-time.Hour).UTC().Format(http.TimeFormat)}, {code: 200}},
			wantSent: 1, wantWaits: []wait{exactly(0)}},
		{name: "429 with a bad Retry-After backs off", answers: []answer{{429, "soon"}, {code: 200}}, wantSent: 1, wantWaits: []wait{b1}},
		{name: "Retry-After only counts on 429 and 503", answers: []answer{{500, "7"}, {code: 200}}, wantSent: 1, wantWaits: []wait{b1}},
		{name: "Retry-After beyond the limit gives up", answers: []answer{{429, "3600"}}},
		{name: "give up after max attempts", answers: []answer{{code: 500}}, maxAttempts: 3, wantWaits: []wait{b1, b2}},
		{name: "400 is not retried", answers: []answer{{code: 400}}},
		{name: "501 is not retried", answers: []answer{{code: 501}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				a := tc.answers[min(n, len(tc.answers)-1)]
				if a.retryAfter != "" {
					w.Header().Set("Retry-After", a.retryAfter)
				}
				w.WriteHeader(a.code)
			})
			sl := &sleeper{}
			opts := testOptions(sl)
			opts.MaxAttempts, opts.BaseBackoff, opts.MaxBackoff, opts.MaxRetryAfter = tc.maxAttempts, s, 4*s, time.Minute
			if opts.MaxAttempts == 0 {
				opts.MaxAttempts = 3
			}
			nf := newNotifier(t, []Target{{Name: "hook", Kind: KindWebhook, URL: rc.srv.URL}}, opts)
			nf.Notify(step("x"))
			closeAll(t, nf)

			attempts := len(tc.wantWaits) + 1
			reqs := rc.requests()
			if len(reqs) != attempts {
				t.Fatalf("%d attempts, want %d", len(reqs), attempts)
			}
			for i, r := range reqs {
				// One delivery: the same ID on every retry.
				if id := r.header.Get(DeliveryHeader); id != "id-1" {
					t.Errorf("attempt %d: delivery ID %q, want id-1", i+1, id)
				}
			}
			waits := sl.got()
			if len(waits) != len(tc.wantWaits) {
				t.Fatalf("waits %v, want %d of them", waits, len(tc.wantWaits))
			}
			for i, w := range tc.wantWaits {
				if waits[i] < w.lo || waits[i] > w.hi {
					t.Errorf("wait %d = %v, want within [%v, %v]", i+1, waits[i], w.lo, w.hi)
				}
			}
			wantFailed := 1 - tc.wantSent
			if got := metric(t, nf, "sent", "hook"); got != tc.wantSent {
				t.Errorf("sent = %v, want %v", got, tc.wantSent)
			}
			if got := metric(t, nf, "failed", "hook"); got != wantFailed {
				t.Errorf("failed = %v, want %v", got, wantFailed)
			}
			if got := metric(t, nf, "retries", "hook"); got != float64(len(tc.wantWaits)) {
				t.Errorf("retries = %v, want %d", got, len(tc.wantWaits))
			}
		})
	}
}

// A receiver that cannot be reached is retried like a 5xx, and the error
// does not quote the URL (a Slack URL is a credential).
func TestUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 is never handed out as an ephemeral port, so the connection is
	// refused every time. The port of a closed test server is no such
	// address: a server started meanwhile, in this process or another, may
	// get it and answer the retries, which then fail both tests.
	const url = "http://127.0.0.1:1/services/T000/B000/XXXXSECRET"
	sl := &sleeper{}
	opts := testOptions(sl)
	opts.MaxAttempts = 3
	logged := &logBuffer{}
	opts.Log = logged.logger()
	nf := newNotifier(t, []Target{{Name: "slack", Kind: KindSlack, URL: url}}, opts)
	nf.Notify(step("x"))
	closeAll(t, nf)
	if got := len(sl.got()); got != 2 {
		t.Errorf("%d waits, want 2", got)
	}
	if got := metric(t, nf, "failed", "slack"); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
	if !strings.Contains(logged.String(), "notification not delivered") {
		t.Errorf("failure not logged: %q", logged.String())
	}
	if strings.Contains(logged.String(), "XXXXSECRET") {
		t.Errorf("log leaks the URL: %q", logged.String())
	}
}

// The default client has a connection pool of its own: closing the idle
// connections of http.DefaultTransport, as every httptest.Server.Close and
// some libraries do, leaves it alone. In the shared pool that call could
// fail a request the receiver had already answered (see newTransport), and
// the notifier posted a 400 twice or delivered a notification twice. Close
// then releases the pool: the receiver sees the connection closed, not kept
// alive until an idle timeout.
func TestOwnConnectionPool(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	nf := newNotifier(t, []Target{{Name: "hook", Kind: KindWebhook, URL: rc.srv.URL}}, testOptions(&sleeper{}))
	nf.Notify(step("m1"))
	poll.Until(t, "m1 delivered", func() bool { return metric(t, nf, "sent", "hook") == 1 })
	http.DefaultTransport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	nf.Notify(step("m2"))
	closeAll(t, nf)

	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if reqs[0].remote != reqs[1].remote {
		t.Errorf("m2 came on a new connection (%s, then %s): closing http.DefaultTransport's idle connections closed the notifier's",
			reqs[0].remote, reqs[1].remote)
	}
	poll.Until(t, "connection closed by Close", func() bool { return rc.conns.Load() == 0 })
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	nf := &Notifier{opts: Options{BaseBackoff: time.Second, MaxBackoff: time.Minute}}
	cases := []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{6, 16 * time.Second, 32 * time.Second},
		{7, 30 * time.Second, time.Minute}, // 64s capped
		{40, 30 * time.Second, time.Minute},
		{200, 30 * time.Second, time.Minute}, // no shift overflow
	}
	for _, tc := range cases {
		for range 100 {
			if d := nf.backoff(tc.attempt); d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"99999999999", 24 * time.Hour, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{t0.Add(90 * time.Second).UTC().Format(http.TimeFormat), 90 * time.Second, true},
		{t0.Add(-90 * time.Second).UTC().Format(http.TimeFormat), 0, true},
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, t0)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
