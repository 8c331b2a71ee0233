package clusterapi

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rolloutapi"
)

// History returns the last limit Kubernetes Events about the Rollout,
// newest last: the controller records every engine Event there (steps,
// analysis, commands with who sent them, aborts, promotions). Events are
// matched by the Rollout's UID, so those of an earlier Rollout of the same
// name are not shown. The API server keeps Events for a limited time (its
// --event-ttl, one hour by default); status.lastCommand and
// status.lastRollout outlive them.
func (b *Backend) History(ctx context.Context, namespace, name string, limit int) ([]rolloutapi.Event, error) {
	ro, err := b.get(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	// The core/v1 view of Events shows those written through
	// events.k8s.io/v1 too (same objects), so either kind of recorder in
	// the controller is read here.
	opts := &client.ListOptions{
		Namespace:     namespace,
		FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(ro.UID)),
		Limit:         b.pageSize,
	}
	var evs []corev1.Event
	for {
		var page corev1.EventList
		if err := b.c.List(ctx, &page, opts); err != nil {
			return nil, classify(err, fmt.Sprintf("list events of rollout %s/%s", namespace, name))
		}
		evs = append(evs, page.Items...)
		if opts.Continue = page.Continue; opts.Continue == "" {
			break
		}
	}
	sortEvents(evs)
	if limit > 0 && len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	out := make([]rolloutapi.Event, 0, len(evs))
	for i := range evs {
		out = append(out, toEvent(&evs[i]))
	}
	return out, nil
}

// sortEvents orders Events oldest first. Event times have one-second
// resolution, so ties are common: they are broken by creation time, then by
// name, which client-go's recorder derives from the time in nanoseconds
// ("<object>.<hex UnixNano>") — an order the API does not promise, but the
// best one the objects carry.
func sortEvents(evs []corev1.Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		ti, tj := eventTime(&evs[i]), eventTime(&evs[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		ci, cj := evs[i].CreationTimestamp.Time, evs[j].CreationTimestamp.Time
		if !ci.Equal(cj) {
			return ci.Before(cj)
		}
		return evs[i].Name < evs[j].Name
	})
}

// eventTime is when the Event last happened. core/v1 recorders set
// lastTimestamp; events.k8s.io/v1 recorders set eventTime and, for a
// repeated Event, series.lastObservedTime.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func toEvent(e *corev1.Event) rolloutapi.Event {
	msg := strings.TrimSpace(e.Message)
	// A recorder folds repeats of one Event into one object with a count;
	// saying so keeps "it happened 5 times" from reading as once.
	n := e.Count
	if e.Series != nil {
		n = e.Series.Count
	}
	if n > 1 {
		msg += fmt.Sprintf(" (%d times since %s)", n, firstTime(e).UTC().Format(time.RFC3339))
	}
	return rolloutapi.Event{Time: eventTime(e), Type: e.Type, Reason: e.Reason, Message: msg}
}

func firstTime(e *corev1.Event) time.Time {
	switch {
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
