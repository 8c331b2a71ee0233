package controller

import (
	"crypto/rand"
	"errors"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Controller mode's notifications are status-driven, as the Git revert is.
// persist writes a notification for every engine Event a target selects
// into status.pendingNotifications, in the same status write as the step
// that emitted the Event; only once that write is in are they sent. A
// notification leaves the list in a later status write, after every target
// delivered it or gave up on it. A controller that stops (or crashes, or
// loses the lease) before then leaves it in status, and whoever reconciles
// the Rollout next sends it again under the same ID: at least once, with
// the ID (X-Sluice-Delivery) as the receiver's idempotency key. What this
// process has sent is kept in memory only to avoid sending twice from one
// process; it is never the record.

// notifyRetry is how soon a notification a target dropped untried (a full
// queue) is sent again.
const notifyRetry = time.Second

// notifyPoll is how often a Rollout with notifications in flight is
// looked at anyway, should a wake be lost.
const notifyPoll = 30 * time.Second

// Notifier delivers notifications; notify.Notifier is one. Send reports
// back once every selecting target is done with n (nil), or when one
// dropped it untried (notify.ErrNotSent).
type Notifier interface {
	Send(n notify.Notification, done func(error))
	Selects(n notify.Notification) bool
}

// deliveredMemory is how long this process remembers a delivered
// notification after the status stopped listing it. The reconciler reads
// Rollouts from the manager's cache, which may still show a status from
// before the write that removed it; forgetting at once would send such a
// notification a second time.
const deliveredMemory = 10 * time.Minute

// deliveryState is what this process knows of one pending notification.
type deliveryState int

const (
	inFlight deliveryState = iota + 1
	delivered
)

type delivery struct {
	state deliveryState
	// unlisted is when a persisted status was first seen without it.
	unlisted time.Time
}

// outbox tracks the sends of this process, per Rollout and ID.
type outbox struct {
	mu sync.Mutex
	m  map[types.NamespacedName]map[string]*delivery
	// wake has the Rollout reconciled once a notification is done.
	wake chan event.GenericEvent
}

func newOutbox() *outbox {
	return &outbox{m: map[types.NamespacedName]map[string]*delivery{}, wake: make(chan event.GenericEvent, 1024)}
}

func (o *outbox) state(key types.NamespacedName, id string) deliveryState {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d := o.m[key][id]; d != nil {
		return d.state
	}
	return 0
}

func (o *outbox) set(key types.NamespacedName, id string, s deliveryState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s == 0 {
		delete(o.m[key], id)
		if len(o.m[key]) == 0 {
			delete(o.m, key)
		}
		return
	}
	if o.m[key] == nil {
		o.m[key] = map[string]*delivery{}
	}
	if d := o.m[key][id]; d != nil {
		d.state = s
		return
	}
	o.m[key][id] = &delivery{state: s}
}

// keep forgets the IDs of key that persisted statuses have not listed
// for deliveredMemory.
func (o *outbox) keep(key types.NamespacedName, pending []v1alpha1.PendingNotification, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := o.m[key]
	for id, d := range ids {
		switch {
		case listed(pending, id):
			d.unlisted = time.Time{}
		case d.unlisted.IsZero():
			d.unlisted = now
		case now.Sub(d.unlisted) > deliveredMemory:
			delete(ids, id)
		}
	}
	if len(ids) == 0 {
		delete(o.m, key)
	}
}

func (o *outbox) forget(key types.NamespacedName) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, key)
}

// signal asks for a reconcile of key without ever blocking a notifier's
// worker: a wake lost to a full channel is made up by notifyPoll.
func (o *outbox) signal(key types.NamespacedName) {
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case o.wake <- event.GenericEvent{Object: ro}:
	default:
	}
}

func listed(pending []v1alpha1.PendingNotification, id string) bool {
	for _, p := range pending {
		if p.ID == id {
			return true
		}
	}
	return false
}

// pendingNotifications is the list the status being persisted carries:
// the persisted one without what this process saw delivered, then one
// entry per Event of this step that a target selects. Without a Notifier
// the list is dropped: nothing would ever send it. Past
// MaxPendingNotifications the oldest go, reported by summarize.
func (r *Reconciler) pendingNotifications(rc *reconcileContext) []v1alpha1.PendingNotification {
	if r.Notifier == nil || r.outbox == nil {
		return nil
	}
	key := types.NamespacedName{Namespace: rc.ro.Namespace, Name: rc.ro.Name}
	var out []v1alpha1.PendingNotification
	for _, p := range rc.prev.PendingNotifications {
		if r.outbox.state(key, p.ID) != delivered {
			out = append(out, p)
		}
	}
	st := &rc.out.Status
	for _, ev := range rc.out.Events {
		n := notify.FromEvent(rc.ro.Namespace, rc.ro.Name, ev, st, rc.now)
		if !r.Notifier.Selects(n) {
			continue
		}
		out = append(out, pendingOf(n))
	}
	if drop := len(out) - v1alpha1.MaxPendingNotifications; drop > 0 {
		rc.droppedNotifications = drop
		out = out[drop:]
	}
	return out
}

// pendingOf records n with a fresh ID, its message bounded as outside text
// (it may carry a proxy's NACK).
func pendingOf(n notify.Notification) v1alpha1.PendingNotification {
	return v1alpha1.PendingNotification{
		ID:   rand.Text(),
		Type: string(n.Type), Reason: n.Reason,
		Message: untrusted.Text(n.Message, maxEventNote),
		Time:    metav1.NewTime(n.Time),
		Step:    n.Step, StableRevision: n.StableRevision, CanaryRevision: n.CanaryRevision,
		StableWeight: n.StableWeight, CanaryWeight: n.CanaryWeight, Commit: n.Commit,
	}
}

func notificationOf(ro *v1alpha1.Rollout, p v1alpha1.PendingNotification) notify.Notification {
	return notify.Notification{
		Namespace: ro.Namespace, Rollout: ro.Name,
		Type: engine.EventType(p.Type), Reason: p.Reason, Message: p.Message, Time: p.Time.Time,
		Step: p.Step, StableRevision: p.StableRevision, CanaryRevision: p.CanaryRevision,
		StableWeight: p.StableWeight, CanaryWeight: p.CanaryWeight, Commit: p.Commit,
		ID: p.ID,
	}
}

// sendPending sends, after the status listing them is persisted, the
// pending notifications this process has not sent yet: new ones, and
// after a restart or a change of leader every one still listed.
func (r *Reconciler) sendPending(rc *reconcileContext) {
	if r.Notifier == nil || r.outbox == nil {
		return
	}
	key := types.NamespacedName{Namespace: rc.ro.Namespace, Name: rc.ro.Name}
	pending := rc.ro.Status.PendingNotifications
	r.outbox.keep(key, pending, rc.now)
	for _, p := range pending {
		if r.outbox.state(key, p.ID) != 0 {
			continue
		}
		r.outbox.set(key, p.ID, inFlight)
		id := p.ID
		r.Notifier.Send(notificationOf(rc.ro, p), func(err error) {
			if errors.Is(err, notify.ErrNotSent) {
				// Dropped untried: send it again soon, not at once, so
				// that a full queue is not refilled in a loop.
				r.outbox.set(key, id, 0)
				time.AfterFunc(notifyRetry, func() { r.outbox.signal(key) })
				return
			}
			r.outbox.set(key, id, delivered)
			r.outbox.signal(key)
		})
	}
}
