package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A controller that stops after a step's status is written but before its
// notification is delivered loses nothing: the notification waits in
// status.pendingNotifications, and the next controller sends it under the
// same delivery ID. The receiver of the first controller takes each
// request and never answers it (a send that had started when the process
// went away); the second one's answers. Every Event of the rollout
// reaches the receiver with one ID, answered once; the status' list
// empties.
func TestNotificationsSurviveARestart(t *testing.T) {
	admin, ctrlCfg := cluster(t)
	ctx := context.Background()
	ns := kubetest.Namespace(t, admin, "notify-restart-")

	rec := &idReceiver{hold: make(chan struct{})}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	t.Cleanup(rec.release)
	conf := fmt.Sprintf(`notifications:
  targets:
  - name: audit
    kind: webhook
    url: %s
    events: ["*"]
`, srv.URL)

	_, stop := startSingleStop(t, ctrlCfg, ns, "notify-1", conf)
	kctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go func() {
		for kctx.Err() == nil {
			_ = kubetest.MarkAvailable(kctx, admin, ns)
			time.Sleep(100 * time.Millisecond)
		}
	}()

	ro := gatewayRollout(ns, "ratings", &v1alpha1.Router{Replicas: &v1alpha1.ReplicasRouter{}})
	ro.Spec.Replicas = new(int32(2))
	if err := admin.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	// The step is in the API server and its notification was sent, not
	// answered.
	var held string
	poll.Until(t, "the Stable notification held by the receiver and pending in status", func() bool {
		held = rec.heldID(v1alpha1.ReasonStable)
		if held == "" || admin.Get(ctx, key, ro) != nil {
			return false
		}
		return slices.ContainsFunc(ro.Status.PendingNotifications, func(p v1alpha1.PendingNotification) bool {
			return p.ID == held && p.Reason == v1alpha1.ReasonStable
		})
	})
	stop()

	rec.release()
	startSingle(t, ctrlCfg, ns, "notify-2", conf)
	poll.Until(t, "the held notification delivered by the next controller, status emptied", func() bool {
		return rec.answeredCount(held) == 1 && admin.Get(ctx, key, ro) == nil && len(ro.Status.PendingNotifications) == 0
	})

	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := admin.Get(ctx, key, ro); err != nil {
			return err
		}
		ro.Spec.Template.Spec.Containers[0].Image = "ratings:v2"
		return admin.Update(ctx, ro)
	}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "a Promoted notification delivered, status emptied", func() bool {
		return slices.Contains(rec.answeredReasons(), v1alpha1.ReasonPromoted) &&
			admin.Get(ctx, key, ro) == nil && len(ro.Status.PendingNotifications) == 0
	})

	got := rec.answeredReasons()
	want := []string{v1alpha1.ReasonStable, v1alpha1.ReasonNewRevision, v1alpha1.ReasonStepAdvanced, v1alpha1.ReasonPromoted}
	if indexSubsequence(got, want) < 0 {
		t.Errorf("delivered %v: want %v among them, in that order", got, want)
	}
	for id, n := range rec.answeredIDs() {
		if n != 1 {
			t.Errorf("delivery %s answered %d times, want once", id, n)
		}
	}
	if bad := rec.problem(); bad != "" {
		t.Error(bad)
	}
}

// idReceiver is a webhook receiver that, until release, takes every
// request and answers none (the request stays open until the sender goes
// away); after it, it answers each with 204. It records delivery IDs.
type idReceiver struct {
	hold     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	held     map[string]string // reason → first ID held
	answered []answer
	errs     []string
}

type answer struct{ id, reason string }

func (r *idReceiver) release() { r.once.Do(func() { close(r.hold) }) }

func (r *idReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var p notify.WebhookPayload
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	id := req.Header.Get(notify.DeliveryHeader)
	r.mu.Lock()
	if err != nil || id == "" || p.ID != id {
		r.errs = append(r.errs, fmt.Sprintf("a request without a delivery ID or payload (header %q, error %v): %s", id, err, body))
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	select {
	case <-r.hold:
	default:
		if r.held == nil {
			r.held = map[string]string{}
		}
		if _, ok := r.held[p.Event.Reason]; !ok {
			r.held[p.Event.Reason] = id
		}
		r.mu.Unlock()
		select {
		case <-req.Context().Done():
		case <-r.hold:
		}
		// Never answered: the sender stopped, or the test ended.
		panic(http.ErrAbortHandler)
	}
	r.answered = append(r.answered, answer{id: id, reason: p.Event.Reason})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *idReceiver) heldID(reason string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held[reason]
}

func (r *idReceiver) answeredCount(id string) int {
	return r.answeredIDs()[id]
}

func (r *idReceiver) answeredIDs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, a := range r.answered {
		m[a.id]++
	}
	return m
}

func (r *idReceiver) answeredReasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.answered {
		out = append(out, a.reason)
	}
	return out
}

func (r *idReceiver) problem() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return ""
	}
	return fmt.Sprint("the receiver refused: ", r.errs)
}
