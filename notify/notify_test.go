package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// With the receiver stalled, Notify keeps returning at once; the queue
// keeps the newest notifications and counts the oldest it drops.
func TestNotifyNeverBlocks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	const size, burst = 4, 100
	opts := testOptions(&sleeper{})
	opts.QueueSize = size
	nf := newNotifier(t, []Target{{Name: "hook", Kind: KindWebhook, URL: rc.srv.URL}}, opts)

	nf.Notify(step("m0"))
	rc.next(t) // m0 is in flight and stalled; the queue is empty

	done := make(chan struct{})
	go func() {
		for i := 1; i <= burst; i++ {
			nf.Notify(step(fmt.Sprintf("m%d", i)))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a bound for a hang, not a speed expectation
		t.Fatal("Notify blocked behind a stalled receiver")
	}
	if got := metric(t, nf, "dropped", "hook"); got != burst-size {
		t.Errorf("dropped = %v, want %d", got, burst-size)
	}
	if got := metric(t, nf, "queued", "hook"); got != size {
		t.Errorf("queue length = %v, want %d", got, size)
	}

	close(release)
	closeAll(t, nf)
	var got []string
	for _, r := range rc.requests() {
		got = append(got, r.message(t))
	}
	want := []string{"m0", "m97", "m98", "m99", "m100"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delivered %v, want %v (in order, oldest dropped)", got, want)
	}
}

// A stalled target does not hold up the others.
func TestTargetsIndependent(t *testing.T) {
	t.Parallel()
	stalled := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	fine := newReceiver(t, nil)
	nf := newNotifier(t, []Target{
		{Name: "stalled", Kind: KindWebhook, URL: stalled.srv.URL},
		{Name: "fine", Kind: KindWebhook, URL: fine.srv.URL},
	}, testOptions(&sleeper{}))
	for i := range 3 {
		nf.Notify(step(fmt.Sprintf("m%d", i)))
	}
	for i := range 3 {
		if got := fine.next(t).message(t); got != fmt.Sprintf("m%d", i) {
			t.Fatalf("fine target got %q, want m%d", got, i)
		}
	}
}

func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	nf := newNotifier(t, []Target{{Name: "hook", Kind: KindWebhook, URL: rc.srv.URL}}, testOptions(&sleeper{}))
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("m%d", i))
		nf.Notify(step(want[i]))
	}
	closeAll(t, nf)
	var got []string
	for _, r := range rc.requests() {
		got = append(got, r.message(t))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("delivered by Close: %v, want %v", got, want)
	}
	if s := metric(t, nf, "sent", "hook"); s != 10 {
		t.Errorf("sent = %v, want 10", s)
	}

	nf.Notify(step("late"))
	if got := metric(t, nf, "dropped", "hook"); got != 1 {
		t.Errorf("dropped after Close = %v, want 1", got)
	}
	if n := len(rc.requests()); n != 10 {
		t.Errorf("%d requests after a Notify past Close, want 10", n)
	}
	if err := nf.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// When ctx ends first, Close aborts the request in flight, drops the queue
// and says how much was lost.
func TestCloseGivesUp(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(cancelled)
	})
	nf := newNotifier(t, []Target{{Name: "hook", Kind: KindWebhook, URL: rc.srv.URL}}, testOptions(&sleeper{}))
	nf.Notify(step("m0"))
	rc.next(t)
	nf.Notify(step("m1"))
	nf.Notify(step("m2"))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := nf.Close(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "3 notification(s) not delivered") {
		t.Fatalf("Close = %v, want 3 lost and context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the request in flight was not cancelled")
	}
	if got := metric(t, nf, "dropped", "hook"); got != 2 {
		t.Errorf("dropped = %v, want 2", got)
	}
	if got := metric(t, nf, "failed", "hook"); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	type ev struct {
		typ    engine.EventType
		reason string
	}
	stepEv := ev{engine.EventNormal, v1alpha1.ReasonStepAdvanced}
	promo := ev{engine.EventNormal, v1alpha1.ReasonPromoted}
	abort := ev{engine.EventWarning, v1alpha1.ReasonAnalysisFailed}
	started := ev{engine.EventNormal, "AnalysisStarted"}
	rollback := ev{engine.EventNormal, v1alpha1.ReasonRolledBackToStable}
	all := []ev{stepEv, promo, abort, started, rollback}
	cases := []struct {
		name    string
		events  []string
		want    []ev
		wantErr string
	}{
		{name: "default", want: []ev{stepEv, promo, abort, rollback}},
		{name: "everything", events: []string{"*"}, want: all},
		{name: "warnings only", events: []string{"Warning"}, want: []ev{abort}},
		{name: "normal only", events: []string{"Normal"}, want: []ev{stepEv, promo, started, rollback}},
		{name: "reasons", events: []string{"RolloutPromoted", "AnalysisStarted"}, want: []ev{promo, started}},
		{name: "type or reason", events: []string{"Warning", "RolloutPromoted"}, want: []ev{promo, abort}},
		{name: "unknown reason selects nothing", events: []string{"NoSuchReason"}},
		{name: "empty entry", events: []string{"Warning", ""}, wantErr: "empty entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseFilter(tc.events)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseFilter = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []ev
			for _, e := range all {
				if f.Match(e.typ, e.reason) {
					got = append(got, e)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("selected %v, want %v", got, tc.want)
			}
		})
	}
}

// Each target gets what its own filter selects.
func TestFilterPerTarget(t *testing.T) {
	t.Parallel()
	warn, promo, def := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	nf := newNotifier(t, []Target{
		{Name: "warn", Kind: KindWebhook, URL: warn.srv.URL, Events: []string{"Warning"}},
		{Name: "promo", Kind: KindWebhook, URL: promo.srv.URL, Events: []string{v1alpha1.ReasonPromoted}},
		{Name: "default", Kind: KindWebhook, URL: def.srv.URL},
	}, testOptions(&sleeper{}))
	nf.Notify(step("step"))
	nf.Notify(note(v1alpha1.ReasonAnalysisFailed, engine.EventWarning, "abort"))
	nf.Notify(note("AnalysisStarted", engine.EventNormal, "started"))
	nf.Notify(note(v1alpha1.ReasonPromoted, engine.EventNormal, "promoted"))
	closeAll(t, nf)
	for _, tc := range []struct {
		rc   *receiver
		want []string
	}{
		{warn, []string{"abort"}},
		{promo, []string{"promoted"}},
		{def, []string{"step", "abort", "promoted"}},
	} {
		var got []string
		for _, r := range tc.rc.requests() {
			got = append(got, r.message(t))
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("got %v, want %v", got, tc.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	ok := Target{Name: "a", Kind: KindWebhook, URL: "https://example.com/hook"}
	with := func(f func(*Target)) []Target { t := ok; f(&t); return []Target{t} }
	cases := []struct {
		name    string
		targets []Target
		wantErr string
	}{
		{"valid", []Target{ok, {Name: "b", Kind: KindSlack, URL: "https://hooks.slack.com/services/x"}}, ""},
		{"no targets", nil, ""},
		{"no name", with(func(t *Target) { t.Name = "" }), "without a name"},
		{"bad kind", with(func(t *Target) { t.Kind = "email" }), `kind "email" is not webhook or slack`},
		{"relative url", with(func(t *Target) { t.URL = "/hook" }), "absolute http(s) URL"},
		{"other scheme", with(func(t *Target) { t.URL = "ftp://example.com/SECRETPATH" }), "absolute http(s) URL"},
		{"signed slack", []Target{{Name: "s", Kind: KindSlack, URL: "https://x", Secret: []byte("k")}}, "not signed"},
		{"bad filter", with(func(t *Target) { t.Events = []string{""} }), "empty entry"},
		{"duplicate", []Target{ok, ok}, `"a": defined twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nf, err := New(tc.targets, testOptions(&sleeper{}))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				closeAll(t, nf)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "SECRETPATH") {
				t.Errorf("error quotes the URL: %v", err)
			}
		})
	}
}

func TestMetricsRegistration(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	targets := []Target{{Name: "hook", Kind: KindWebhook, URL: "http://127.0.0.1:1/"}}
	nf, err := New(targets, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, nf)
	// Series exist at zero before anything happens.
	want := `
# HELP sluice_notify_dropped_total Notifications dropped unsent: the queue was full (the oldest goes) or the notifier was closing.
# TYPE sluice_notify_dropped_total counter
sluice_notify_dropped_total{target="hook"} 0
# HELP sluice_notify_sent_total Notifications delivered.
# TYPE sluice_notify_sent_total counter
sluice_notify_sent_total{target="hook"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_notify_sent_total", "sluice_notify_dropped_total"); err != nil {
		t.Error(err)
	}
	if _, err := New(targets, Options{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register notification metrics") {
		t.Errorf("second New on the same registry = %v, want a registration error", err)
	}
	// A failed registration leaves nothing behind.
	partial := prometheus.NewRegistry()
	partial.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_notify_retries_total"}))
	if _, err := New(targets, Options{Registerer: partial}); err == nil {
		t.Fatal("New registered over an existing metric")
	}
	if n, err := testutil.GatherAndCount(partial); err != nil || n != 1 {
		t.Errorf("registry after a failed New holds %d metrics (%v), want 1", n, err)
	}
}

func TestConfigResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLACK_URL": "https://hooks.slack.com/services/x", "HOOK_SECRET": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct {
		name    string
		cfg     TargetConfig
		want    Target
		wantErr string
	}{
		{name: "inline", cfg: TargetConfig{Name: "h", Kind: KindWebhook, URL: "https://h", Secret: "k", Events: []string{"Warning"}},
			want: Target{Name: "h", Kind: KindWebhook, URL: "https://h", Secret: []byte("k"), Events: []string{"Warning"}}},
		{name: "url from env", cfg: TargetConfig{Name: "s", Kind: KindSlack, URLRef: &ValueFrom{Env: "SLACK_URL"}},
			want: Target{Name: "s", Kind: KindSlack, URL: "https://hooks.slack.com/services/x"}},
		{name: "secret from env", cfg: TargetConfig{Name: "h", Kind: KindWebhook, URL: "https://h", SecretRef: &ValueFrom{Env: "HOOK_SECRET"}},
			want: Target{Name: "h", Kind: KindWebhook, URL: "https://h", Secret: []byte("from-env")}},
		{name: "secret from file, newline dropped", cfg: TargetConfig{Name: "h", Kind: KindWebhook, URL: "https://h", SecretRef: &ValueFrom{File: secretFile}},
			want: Target{Name: "h", Kind: KindWebhook, URL: "https://h", Secret: []byte("from-file")}},
		{name: "no url", cfg: TargetConfig{Name: "h", Kind: KindWebhook}, wantErr: "url or urlRef is required"},
		{name: "inline and reference", cfg: TargetConfig{Name: "h", URL: "https://h", Secret: "k", SecretRef: &ValueFrom{Env: "HOOK_SECRET"}},
			wantErr: "secret: set the value or a reference, not both"},
		{name: "env and file", cfg: TargetConfig{Name: "h", URL: "https://h", SecretRef: &ValueFrom{Env: "A", File: "b"}}, wantErr: "either env or file"},
		{name: "empty reference", cfg: TargetConfig{Name: "h", URL: "https://h", SecretRef: &ValueFrom{}}, wantErr: "neither env nor file"},
		{name: "unset env", cfg: TargetConfig{Name: "s", URLRef: &ValueFrom{Env: "NOPE"}}, wantErr: "url: environment variable NOPE is not set"},
		{name: "missing file", cfg: TargetConfig{Name: "h", URL: "https://h", SecretRef: &ValueFrom{File: filepath.Join(dir, "nope")}}, wantErr: "no such file"},
		{name: "empty file", cfg: TargetConfig{Name: "h", URL: "https://h", SecretRef: &ValueFrom{File: emptyFile}}, wantErr: "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Config{Targets: []TargetConfig{tc.cfg}}.Resolve(lookup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "notifications.targets[0]") {
					t.Fatalf("Resolve = %v, want an error at targets[0] containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, []Target{tc.want}) {
				t.Fatalf("Resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
}
