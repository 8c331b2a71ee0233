package clusterapi

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// History returns the last limit entries of the Rollout's history, newest
// last: its Kubernetes Events, where the controller records every engine
// Event (steps, analysis, commands with who sent them, aborts,
// promotions), and what its status records of the same. Events are
// matched by the Rollout's UID, so those of an earlier Rollout of the same
// name are not shown.
//
// Events alone are not a record: the API server keeps them for its
// --event-ttl (one hour by default), and a recorder may fold several into
// one (client-go's core/v1 recorder "combined from similar events",
// events.k8s.io's series). The status keeps the current rollout's story
// (the step in force, every analysis run with its start and end, an
// abort) and how the last rollout ended and the last command: each of
// those no Event tells is added (statusHistory).
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
	out := make([]rolloutapi.Event, 0, len(evs))
	for i := range evs {
		out = append(out, toEvent(&evs[i]))
	}
	out = withStatus(out, &ro.Status)
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// withStatus adds to evs, oldest first, the entries of st's history that
// no Event of evs tells, and returns them all, oldest first.
func withStatus(evs []rolloutapi.Event, st *v1alpha1.RolloutStatus) []rolloutapi.Event {
	n := len(evs)
	for _, e := range statusHistory(st) {
		if !told(evs[:n], e) {
			evs = append(evs, e.Event)
		}
	}
	// Stable: of an Event and a status entry at one time, the Event first.
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	return evs
}

// statusEntry is a history entry read from status, and what an Event
// telling the same carries: the same reason, the token in its message,
// and, unless any time will do, a time near the entry's.
type statusEntry struct {
	rolloutapi.Event
	token   string
	anyTime bool
}

// toldWithin is how far from a status time an Event may be and still tell
// the same: the controller records Events right after the status write,
// which is stamped with the reconcile's start.
const toldWithin = 30 * time.Second

// told reports whether an Event among evs tells what e does.
func told(evs []rolloutapi.Event, e statusEntry) bool {
	for _, ev := range evs {
		if ev.Reason != e.Reason || !strings.Contains(ev.Message, e.token) {
			continue
		}
		if e.anyTime || ev.Time.Sub(e.Time).Abs() <= toldWithin {
			return true
		}
		// A step's Event comes before the step's start time when a
		// new plan moved it on (status.stepStartedAt).
		if e.Reason == v1alpha1.ReasonStepAdvanced && ev.Time.Before(e.Time) {
			return true
		}
	}
	return false
}

// statusHistory is what the status records of the Rollout's history, in
// the words of the engine's Events.
func statusHistory(st *v1alpha1.RolloutStatus) []statusEntry {
	var out []statusEntry
	add := func(at *metav1.Time, typ, reason, token, msg string, anyTime bool) {
		if at == nil || at.IsZero() {
			return
		}
		out = append(out, statusEntry{Event: rolloutapi.Event{Time: at.Time, Type: typ, Reason: reason, Message: msg}, token: token, anyTime: anyTime})
	}
	if st.CanaryRevision != "" && st.StepDisplay != "" {
		step := "step " + st.StepDisplay
		add(st.StepStartedAt, corev1.EventTypeNormal, v1alpha1.ReasonStepAdvanced, step+":", step+" of revision "+st.CanaryRevision, false)
	}
	for i := range st.Analysis {
		r := &st.Analysis[i]
		add(r.StartedAt, corev1.EventTypeNormal, "AnalysisStarted", r.Name,
			fmt.Sprintf("%s analysis run %s started", analysisKindWord(r.Kind), r.Name), true)
		if !r.Phase.Completed() {
			continue
		}
		typ, reason := corev1.EventTypeWarning, v1alpha1.ReasonAnalysisFailed
		switch r.Phase {
		case v1alpha1.AnalysisSuccessful:
			typ, reason = corev1.EventTypeNormal, "AnalysisSuccessful"
		case v1alpha1.AnalysisInconclusive:
			reason = v1alpha1.ReasonInconclusive
		}
		msg := fmt.Sprintf("analysis run %s %s", r.Name, strings.ToLower(string(r.Phase)))
		if r.Message != "" {
			msg += ": " + r.Message
		}
		add(r.CompletedAt, typ, reason, r.Name, msg, true)
	}
	if a := st.Abort; a != nil {
		add(&a.At, corev1.EventTypeWarning, a.Reason, "", a.Message, false)
	}
	if lr := st.LastRollout; lr != nil {
		typ, reason := corev1.EventTypeNormal, outcomeReasons[lr.Outcome]
		if lr.Outcome == v1alpha1.OutcomeAborted {
			typ = corev1.EventTypeWarning
		}
		if reason == "" {
			reason = string(lr.Outcome)
		}
		msg := fmt.Sprintf("rollout of revision %s ended: %s", lr.Revision, lr.Outcome)
		if lr.Message != "" {
			msg += ": " + lr.Message
		}
		add(&lr.At, typ, reason, lr.Revision, msg, false)
	}
	if c := st.LastCommand; c != nil {
		msg := fmt.Sprintf("%s ran %s", cmp.Or(c.By, "someone"), c.Kind)
		if c.Result != "" {
			msg += ": " + c.Result
		}
		add(&c.At, corev1.EventTypeNormal, "Command"+string(c.Kind), "ran "+string(c.Kind), msg, false)
	}
	return out
}

// outcomeReasons are the engine's Event reasons for how a rollout ended.
// An abort's own Event, with its reason, is status.abort's entry.
var outcomeReasons = map[v1alpha1.Outcome]string{
	v1alpha1.OutcomePromoted:   v1alpha1.ReasonPromoted,
	v1alpha1.OutcomeSuperseded: v1alpha1.ReasonSuperseded,
	v1alpha1.OutcomeRolledBack: v1alpha1.ReasonRolledBackToStable,
	v1alpha1.OutcomeAborted:    v1alpha1.ReasonRolledBackToStable,
}

// analysisKindWord names a run's kind as the engine's Events do.
func analysisKindWord(k v1alpha1.AnalysisKind) string {
	switch k {
	case v1alpha1.AnalysisBackgroundKind:
		return "background"
	case v1alpha1.AnalysisPrePromotion:
		return "pre-promotion"
	case v1alpha1.AnalysisPostPromotion:
		return "post-promotion"
	case v1alpha1.AnalysisDark:
		return "dark"
	}
	return "step"
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
