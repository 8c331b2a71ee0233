package controller

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// CommandAnnotation holds the manual command a person issued for a Rollout,
// as JSON (see Command). The CLI sets it with a merge patch under the
// user's own kubeconfig (CommandPatch), so the API server's audit log names
// who really patched; the reconciler hands it to the engine, which applies
// an ID once and records it in status.lastCommand, and emits an Event.
//
// The annotation holds one command: a second command written before the
// first was reconciled replaces it. The CLI therefore waits for
// status.lastCommand.id to equal its ID before it reports success.
const CommandAnnotation = "sluice.dev/command"

// Command is the value of CommandAnnotation.
type Command struct {
	// ID makes the command idempotent: the engine never applies an ID that
	// status.lastCommand already holds, so re-reading the annotation after
	// a restart changes nothing.
	ID   string               `json:"id"`
	Kind v1alpha1.CommandKind `json:"kind"`
	// By is who issued the command, as the client states it (the CLI uses
	// the identity the API server reports for its credentials).
	By string `json:"by,omitempty"`
	// At is when the command was issued; status.lastCommand.at records
	// when it was applied.
	At time.Time `json:"at"`
}

var (
	commandKinds = []v1alpha1.CommandKind{
		v1alpha1.CommandPromote, v1alpha1.CommandPromoteFull, v1alpha1.CommandAbort,
		v1alpha1.CommandRetry, v1alpha1.CommandPause, v1alpha1.CommandResume,
	}
	// IDs are short and plain so they read well in status and Events.
	commandID = regexp.MustCompile(`^[A-Za-z0-9][-_.A-Za-z0-9]{0,63}$`)
)

// NewCommand returns a command of kind by someone at now with a fresh
// random ID.
func NewCommand(kind v1alpha1.CommandKind, by string, now time.Time) (Command, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Command{}, fmt.Errorf("command id: %w", err)
	}
	c := Command{ID: hex.EncodeToString(b[:]), Kind: kind, By: by, At: now.UTC().Truncate(time.Second)}
	return c, c.Validate()
}

// Validate checks the ID and the kind.
func (c Command) Validate() error {
	if !commandID.MatchString(c.ID) {
		return fmt.Errorf("command id %q: want 1-64 letters, digits, '-', '_' or '.'", c.ID)
	}
	if !slices.Contains(commandKinds, c.Kind) {
		return fmt.Errorf("command kind %q: want one of %v", c.Kind, commandKinds)
	}
	return nil
}

// Marshal returns the annotation value.
func (c Command) Marshal() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("marshal command: %w", err)
	}
	return string(b), nil
}

// ParseCommand reads an annotation value. Unknown fields are refused so a
// typo never turns into a silently different command.
func ParseCommand(s string) (Command, error) {
	var c Command
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, fmt.Errorf("annotation %s: %w", CommandAnnotation, err)
	}
	if dec.More() {
		return Command{}, fmt.Errorf("annotation %s: trailing data after the command", CommandAnnotation)
	}
	if err := c.Validate(); err != nil {
		return Command{}, fmt.Errorf("annotation %s: %w", CommandAnnotation, err)
	}
	return c, nil
}

// CommandPatch is the JSON merge patch (types.MergePatchType) that sets the
// annotation, touching nothing else of the Rollout.
func CommandPatch(c Command) ([]byte, error) {
	v, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{CommandAnnotation: v}}})
	if err != nil {
		return nil, fmt.Errorf("marshal command patch: %w", err)
	}
	return b, nil
}

// engineCommand is the command as the engine takes it.
func (c Command) engineCommand() engine.Command {
	return engine.Command{ID: c.ID, Kind: c.Kind, By: c.By}
}

// errNoCommand says the Rollout carries no command annotation.
var errNoCommand = errors.New("no command")

// commandOf reads the Rollout's command annotation.
func commandOf(ro *v1alpha1.Rollout) (Command, error) {
	s, ok := ro.Annotations[CommandAnnotation]
	if !ok {
		return Command{}, errNoCommand
	}
	return ParseCommand(s)
}
