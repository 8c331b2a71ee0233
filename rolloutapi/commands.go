package rolloutapi

import (
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/window"
)

// CommandKinds are the manual commands, in the order surfaces offer them.
var CommandKinds = []v1alpha1.CommandKind{
	v1alpha1.CommandPromote, v1alpha1.CommandPromoteFull, v1alpha1.CommandAbort,
	v1alpha1.CommandRetry, v1alpha1.CommandPause, v1alpha1.CommandResume,
}

// CommandOption says what one command would do to a Rollout now.
type CommandOption struct {
	Kind v1alpha1.CommandKind `json:"kind"`
	// Allowed is false when the engine would refuse the command.
	Allowed bool `json:"allowed"`
	// Result is the engine's own answer to the command sent now: what it
	// does ("skipped step 2 (pause 1m)", "aborted: 100% to stable") or
	// why not ("refused: the rollout is aborted; use retry"), the words
	// `sluice promote` and the others print.
	Result string `json:"result"`
}

// Preview asks the engine what each command would do to ro at now, without
// doing it: the rules of what a phase allows live in the engine alone
// (rollout/engine, commands.go), and this is how the dashboard and the CLI
// learn them. It steps a copy of ro with the command as the only
// observation besides the deployment windows, which it evaluates itself; a
// retired Rollout, which only Retire steps, refuses everything, as does one
// whose spec the engine cannot run. A real command may still be answered
// differently, if the Rollout moves before it arrives; the answer then
// says so.
func Preview(ro *v1alpha1.Rollout, now time.Time) []CommandOption {
	out := make([]CommandOption, 0, len(CommandKinds))
	for _, k := range CommandKinds {
		out = append(out, previewOne(ro, k, now))
	}
	return out
}

// previewID names the commands Preview sends; none is ever recorded.
const previewID = "preview"

func previewOne(ro *v1alpha1.Rollout, kind v1alpha1.CommandKind, now time.Time) CommandOption {
	in := engine.Input{Rollout: ro, Now: now, Observations: engine.Observations{
		Commands: []engine.Command{{ID: previewID, Kind: kind}},
		Git:      ro.Status.Git,
	}}
	var out engine.Output
	if engine.Retired(&ro.Status) {
		out = engine.Retire(engine.RetireInput{Input: in})
	} else {
		in.Observations.Window = window.Evaluate(ro.Spec.Windows, now)
		var err error
		if out, err = engine.Step(in); err != nil {
			return CommandOption{Kind: kind, Result: "refused: " + err.Error()}
		}
	}
	lc := out.Status.LastCommand
	if lc == nil || lc.ID != previewID {
		// A Rollout that has seen a command with this ID skips it.
		return CommandOption{Kind: kind, Result: "refused: the engine did not take the command"}
	}
	resp := ResponseOf(*lc)
	return CommandOption{Kind: kind, Allowed: !resp.Refused, Result: resp.Result}
}

// Option returns the option for kind, and whether r has one.
func (r Rollout) Option(kind v1alpha1.CommandKind) (CommandOption, bool) {
	for _, o := range r.Commands {
		if o.Kind == kind {
			return o, true
		}
	}
	return CommandOption{}, false
}

// Verb is how the CLI spells a command: promote, promote --full, abort,
// retry, pause, resume.
func Verb(kind v1alpha1.CommandKind) string {
	if kind == v1alpha1.CommandPromoteFull {
		return "promote --full"
	}
	return strings.ToLower(string(kind))
}
