package notify

import (
	"fmt"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// DefaultEvents is what a target without `events` receives: the steps,
// promotions and rollbacks of a rollout, and every Warning (aborts, pauses
// for a failed or inconclusive analysis, rejected plans).
var DefaultEvents = []string{
	string(engine.EventWarning),
	v1alpha1.ReasonNewRevision,
	v1alpha1.ReasonStepAdvanced,
	v1alpha1.ReasonPromoted,
	v1alpha1.ReasonRolledBackToStable,
	v1alpha1.ReasonRetried,
}

// Filter selects notifications by event type and reason.
type Filter struct {
	all     bool
	types   map[engine.EventType]bool
	reasons map[string]bool
}

// ParseFilter compiles a target's `events` list. Each entry is "*" (every
// event), an event type ("Normal" or "Warning": every event of that type),
// or an event reason ("RolloutPromoted"); an event is sent when any entry
// selects it. An empty list means DefaultEvents.
func ParseFilter(events []string) (Filter, error) {
	if len(events) == 0 {
		events = DefaultEvents
	}
	f := Filter{types: map[engine.EventType]bool{}, reasons: map[string]bool{}}
	for _, e := range events {
		switch e {
		case "":
			return Filter{}, fmt.Errorf("events: empty entry")
		case "*":
			f.all = true
		case string(engine.EventNormal), string(engine.EventWarning):
			f.types[engine.EventType(e)] = true
		default:
			f.reasons[e] = true
		}
	}
	return f, nil
}

// Match reports whether an event of type t with reason is selected.
func (f Filter) Match(t engine.EventType, reason string) bool {
	return f.all || f.types[t] || f.reasons[reason]
}
