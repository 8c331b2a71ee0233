// Package rolloutapi is Sluice's one read and command API for Rollouts,
// shared by the CLI, the web dashboard and both modes: the wire types, a
// handler that serves them from a Backend (`sluice run`'s HTTP API), and a
// Client that speaks them. The Client is a Backend too, so the CLI works
// the same against a local runner, a remote one, or (through another
// Backend, kube/clusterapi) a cluster.
package rolloutapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Rollout is what the API shows of one Rollout.
type Rollout struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Strategy is canary, blueGreen or darkRelease.
	Strategy string `json:"strategy"`
	// Steps describe the steps in order, promotion last; status.currentStepIndex
	// indexes them.
	Steps  []string               `json:"steps"`
	Status v1alpha1.RolloutStatus `json:"status"`
	// Plan is the traffic plan in force, if one was published.
	Plan *plan.Plan `json:"plan,omitempty"`
	// Commands says what each manual command would do now, in the
	// engine's words (Preview): the dashboard offers those allowed.
	Commands []CommandOption `json:"commands,omitempty"`
	// Detail is what a backend knows beyond the status; only Get fills
	// it in, and only as far as the backend knows (Detail).
	Detail *Detail `json:"detail,omitempty"`
}

// Key is namespace/name.
func (r Rollout) Key() string { return r.Namespace + "/" + r.Name }

// Event is one entry of a Rollout's history.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
}

// CommandRequest asks for a manual command.
type CommandRequest struct {
	Kind v1alpha1.CommandKind `json:"kind"`
	// By is who asks. A server sets it from the token that authenticated
	// the request and ignores what a client writes here.
	By string `json:"by,omitempty"`
}

// CommandResponse says what a command did once the engine applied it.
type CommandResponse struct {
	ID     string               `json:"id"`
	Kind   v1alpha1.CommandKind `json:"kind"`
	Result string               `json:"result"`
	// Refused is true when the engine declined the command (the result
	// says why), e.g. promote while aborted.
	Refused bool `json:"refused"`
}

// Backend serves the API.
type Backend interface {
	List(ctx context.Context) ([]Rollout, error)
	Get(ctx context.Context, namespace, name string) (Rollout, error)
	History(ctx context.Context, namespace, name string, limit int) ([]Event, error)
	// Command queues a command and waits until the engine applied it or ctx
	// ends.
	Command(ctx context.Context, namespace, name string, req CommandRequest) (CommandResponse, error)
}

// Errors a Backend returns, mapped to HTTP statuses and back.
var (
	ErrNotFound     = errors.New("not found")
	ErrUnauthorized = errors.New("unauthorized: a valid token is required")
	ErrForbidden    = errors.New("forbidden")
	ErrBadRequest   = errors.New("bad request")
	ErrUnavailable  = errors.New("unavailable")
)

// ValidCommand reports whether kind is a command the engine knows.
func ValidCommand(kind v1alpha1.CommandKind) error {
	if slices.Contains(CommandKinds, kind) {
		return nil
	}
	return fmt.Errorf("%w: unknown command %q (want Promote, PromoteFull, Abort, Retry, Pause or Resume)", ErrBadRequest, kind)
}
