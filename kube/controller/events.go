package controller

import (
	"fmt"

	k8sevents "k8s.io/client-go/tools/events"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Limits of an events.k8s.io/v1 Event the API server enforces.
const (
	maxEventNote   = 1024
	maxEventAction = 128
)

// EventRecorder is the events.k8s.io/v1 recorder the reconciler writes
// with (the manager's GetEventRecorder).
type EventRecorder = k8sevents.EventRecorder

// event records one Event about ro: through Events (events.k8s.io/v1)
// when set, else through the older core/v1 Recorder.
//
// The events.k8s.io recorder folds Events of one object with the same
// type, reason and action into a series within six minutes, keeping the
// first one's note: with a fixed action, "step 3/6" would vanish into
// "step 2/6 (2 times)". The action is therefore what the note says
// happened, cut to the API's 128 bytes, so that only repeats of the very
// same Event make a series and `sluice history` loses no step.
func (r *Reconciler) event(ro *v1alpha1.Rollout, typ, reason, note string) {
	if r.Events == nil {
		r.Recorder.Event(ro, typ, reason, note)
		return
	}
	note = untrusted.Text(note, maxEventNote)
	r.Events.Eventf(ro, nil, typ, reason, untrusted.Text(note, maxEventAction), "%s", note)
}

// engineEvents records the engine Events of a persisted status and sends
// the notifications that status lists as pending (notifications.go).
func (r *Reconciler) engineEvents(rc *reconcileContext) {
	ro := rc.ro
	for _, ev := range rc.out.Events {
		r.event(ro, string(ev.Type), ev.Reason, ev.Message)
	}
	if rc.droppedNotifications > 0 {
		r.event(ro, "Warning", "NotificationsDropped", fmt.Sprintf(
			"%d undelivered notifications dropped, oldest first: at most %d are kept in status",
			rc.droppedNotifications, v1alpha1.MaxPendingNotifications))
	}
	r.sendPending(rc)
}
