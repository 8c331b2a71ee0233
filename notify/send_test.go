package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
)

// outcome waits for Send's done; the bound only catches a hang.
func outcome(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("done was not called")
		return nil
	}
}

func sendTo(nf *Notifier, n Notification) <-chan error {
	ch := make(chan error, 2) // a second call would be a bug the tests catch
	nf.Send(n, func(err error) { ch <- err })
	return ch
}

func TestSendReportsOnceAllTargetsAreDone(t *testing.T) {
	t.Parallel()
	ok := newReceiver(t, nil)
	refusing := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	nf := newNotifier(t, []Target{
		{Name: "ok", Kind: KindWebhook, URL: ok.srv.URL},
		{Name: "refusing", Kind: KindWebhook, URL: refusing.srv.URL},
		{Name: "warnings-only", Kind: KindWebhook, URL: ok.srv.URL, Events: []string{"Warning"}},
	}, testOptions(&sleeper{}))

	n := step("m1")
	n.ID = "outbox-7"
	ch := sendTo(nf, n)
	// Delivered to one, refused for good (400) by the other: both are
	// finished with it, so it is done, not to be sent again.
	if err := outcome(t, ch); err != nil {
		t.Fatalf("done(%v), want nil", err)
	}
	for _, rc := range []*receiver{ok, refusing} {
		r := rc.next(t)
		if got := r.header.Get(DeliveryHeader); got != "outbox-7" {
			t.Errorf("delivery header %q, want the caller's ID", got)
		}
		var p WebhookPayload
		if err := json.Unmarshal(r.body, &p); err != nil || p.ID != "outbox-7" {
			t.Errorf("payload id %q (%v), want outbox-7", p.ID, err)
		}
	}
	select {
	case err := <-ch:
		t.Fatalf("done called twice (second: %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got := len(ok.requests()); got != 1 {
		t.Errorf("the filtered target got it too: %d requests", got)
	}
}

func TestSendWithNoTargetIsDone(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	nf := newNotifier(t, []Target{{Name: "w", Kind: KindWebhook, URL: rc.srv.URL, Events: []string{"Warning"}}}, testOptions(&sleeper{}))
	if err := outcome(t, sendTo(nf, note("StepAdvanced", engine.EventNormal, "x"))); err != nil {
		t.Fatalf("done(%v), want nil", err)
	}
}

// Dropped untried (the queue overflowed, or Close gave up): ErrNotSent, so
// the caller keeps it and sends it again.
func TestSendReportsDrops(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	opts := testOptions(&sleeper{})
	opts.QueueSize = 2
	nf, err := New([]Target{{Name: "hook", Kind: KindWebhook, URL: rc.srv.URL}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	first := sendTo(nf, step("m0"))
	rc.next(t) // m0 in flight, stalled
	var chans []<-chan error
	for i := 1; i <= 3; i++ {
		chans = append(chans, sendTo(nf, step(fmt.Sprintf("m%d", i))))
	}
	// m1 was pushed out by m3.
	if err := outcome(t, chans[0]); !errors.Is(err, ErrNotSent) {
		t.Fatalf("overflowed: done(%v), want ErrNotSent", err)
	}
	// Close gives up at once: m0 is aborted in flight, m2 and m3 drained.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = nf.Close(ctx)
	close(release)
	for i, ch := range []<-chan error{first, chans[1], chans[2]} {
		if err := outcome(t, ch); !errors.Is(err, ErrNotSent) {
			t.Errorf("notification %d after Close: done(%v), want ErrNotSent", i, err)
		}
	}
}
