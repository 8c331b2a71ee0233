package rolloutapi

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// FromRollout is what the API shows of ro. p is the traffic plan in force,
// nil where the backend does not hold one (a cluster keeps only its summary,
// status.traffic). Every Backend converts through it, so `sluice status`
// reads the same whether it talks to a runner or to a cluster. The
// commands' preview is for the present moment (FromRolloutAt).
func FromRollout(ro *v1alpha1.Rollout, p *plan.Plan) Rollout {
	return FromRolloutAt(ro, p, time.Now())
}

// FromRolloutAt is FromRollout with the commands previewed at now.
func FromRolloutAt(ro *v1alpha1.Rollout, p *plan.Plan, now time.Time) Rollout {
	out := Rollout{Namespace: ro.Namespace, Name: ro.Name, Status: ro.Status, Plan: p, Commands: Preview(ro, now)}
	st := ro.Spec.Strategy
	switch {
	case st.Canary != nil:
		out.Strategy = "canary"
	case st.BlueGreen != nil:
		out.Strategy = "blueGreen"
	case st.DarkRelease != nil:
		out.Strategy = "darkRelease"
	default:
		out.Strategy = "-"
	}
	// A strategy the engine cannot label is also one it refuses to run; the
	// status message says why, so the view just shows no steps.
	if labels, err := engine.StepLabels(st); err == nil {
		out.Steps = labels
	}
	return out
}

// ResponseOf is the answer to the command the engine recorded in rec. The
// engine words every refusal "refused: why", which is how a refusal is told
// from a command that did something.
func ResponseOf(rec v1alpha1.CommandRecord) CommandResponse {
	return CommandResponse{ID: rec.ID, Kind: rec.Kind, Result: rec.Result, Refused: strings.HasPrefix(rec.Result, "refused")}
}

// CommandLine is how the answer to a command reads, "ns/name: Kind:
// result": what `sluice promote` and the other verbs print, and what the
// dashboard shows after a command.
func CommandLine(namespace, name string, resp CommandResponse) string {
	return fmt.Sprintf("%s/%s: %s: %s", namespace, name, resp.Kind, resp.Result)
}
