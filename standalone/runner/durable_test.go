package runner

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// stuckReverter never finishes an attempt before its context ends, as a
// push would that the process dies in the middle of.
type stuckReverter struct{ started chan struct{} }

func (s stuckReverter) Revert(ctx context.Context, _ gitsync.RevertRequest) (gitsync.RevertResult, error) {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return gitsync.RevertResult{}, ctx.Err()
}

// The revert is part of the saved status: a runner that stops in the
// middle of the push asks for it again after the restart, and the branch
// gets one revert commit.
func TestRevertSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stuck := stuckReverter{started: make(chan struct{}, 1)}
	s := f.startWith(v1alpha1.AnalysisFailed, func(o *Options) { o.Reverter = stuck })
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	f.push("v3", 9003, "ship v3")
	ro := waitFor(t, s.r, "revert asked for", func(ro rolloutapi.Rollout) bool {
		return ro.Status.GitRevert != nil && ro.Status.GitRevert.Attempts == 1
	})
	if ro.Status.GitRevert.Phase != v1alpha1.GitRevertPending {
		t.Fatalf("gitRevert = %+v", ro.Status.GitRevert)
	}
	select {
	case <-stuck.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the revert attempt never started")
	}
	s.stop()

	s2 := f.start(v1alpha1.AnalysisFailed)
	ro = waitFor(t, s2.r, "revert done after the restart", func(ro rolloutapi.Rollout) bool {
		return ro.Status.GitRevert != nil && ro.Status.GitRevert.Phase == v1alpha1.GitRevertDone && ro.Status.Phase == v1alpha1.PhaseHealthy
	})
	g := ro.Status.GitRevert
	if g.Outcome != "pushed" || g.Attempts != 2 || g.Failures != 1 || !strings.Contains(g.LastError+reasons(t, s2.r), v1alpha1.ReasonGitRevertFailed) {
		t.Fatalf("gitRevert = %+v; want the interrupted attempt counted and the second one pushed", g)
	}
	if n := strings.Count(git(t, f.remote, "log", "--format=%an", "main"), "sluice"); n != 1 {
		t.Fatalf("%d commits by sluice on the branch, want exactly one revert", n)
	}
}

// reasons lists the rollout's history reasons.
func reasons(t *testing.T, b rolloutapi.Backend) string {
	t.Helper()
	hist, err := b.History(context.Background(), "default", "reviews", 200)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range hist {
		out = append(out, e.Reason)
	}
	return strings.Join(out, ",")
}

// hook is a webhook receiver recording delivery IDs; while stalled it
// holds every request until the client gives up.
type hook struct {
	srv     *httptest.Server
	mu      sync.Mutex
	ids     []string
	reasons []string
	stalled bool
}

func newHook(t *testing.T, stalled bool) *hook {
	h := &hook{stalled: stalled}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.ids = append(h.ids, r.Header.Get(notify.DeliveryHeader))
		h.reasons = append(h.reasons, r.Header.Get(notify.EventHeader))
		h.mu.Unlock()
		if h.stalled {
			<-r.Context().Done()
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) got() (ids, reasons []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...), append([]string(nil), h.reasons...)
}

func newNotifier(t *testing.T, url string) *notify.Notifier {
	t.Helper()
	nf, err := notify.New([]notify.Target{{Name: "hook", Kind: notify.KindWebhook, URL: url}},
		notify.Options{Registerer: prometheus.NewRegistry(), Log: testr.New(t), RequestTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return nf
}

// Notifications wait in the outbox until a target took them: a runner that
// stops before its receiver answered sends them again after the restart,
// with the same delivery IDs.
func TestNotificationsSurviveRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stalled := newHook(t, true)
	nf1 := newNotifier(t, stalled.srv.URL)
	s := f.startWith(v1alpha1.AnalysisSuccessful, func(o *Options) { o.Notifier = nf1 })
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	f.push("v2", 9002, "ship v2")
	waitFor(t, s.r, "v2 promoted", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v2" })
	msgs, err := s.st.Outbox()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 3 {
		t.Fatalf("outbox holds %d messages while the receiver stalls, want every event of the rollout", len(msgs))
	}
	// The first delivery is sent by the notifier's own goroutine, which a
	// loaded machine may run after the promotion shows: wait for it
	// rather than read the receiver once.
	var firstTried []string
	for tryUntil := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if firstTried, _ = stalled.got(); len(firstTried) > 0 {
			break
		}
		if time.Now().After(tryUntil) {
			t.Fatal("nothing was tried before the stop")
		}
	}
	s.stop()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = nf1.Close(ctx) // as a kill would: nothing confirmed

	good := newHook(t, false)
	nf2 := newNotifier(t, good.srv.URL)
	t.Cleanup(func() { _ = nf2.Close(context.Background()) })
	s2 := f.startWith(v1alpha1.AnalysisSuccessful, func(o *Options) { o.Notifier = nf2 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		left, err := s2.st.Outbox()
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still in the outbox after the restart", len(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids, rs := good.got()
	delivered := map[string]bool{}
	for _, id := range ids {
		delivered[id] = true
	}
	for _, m := range msgs {
		if !delivered[m.ID] {
			t.Errorf("message %s (saved before the stop) not delivered after the restart; delivered %v", m.ID, ids)
		}
	}
	for _, id := range firstTried {
		if !delivered[id] {
			t.Errorf("delivery %s tried before the stop came back with another ID", id)
		}
	}
	if !strings.Contains(strings.Join(rs, ","), v1alpha1.ReasonPromoted) {
		t.Errorf("reasons delivered %v lack %s", rs, v1alpha1.ReasonPromoted)
	}
}
