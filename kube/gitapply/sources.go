package gitapply

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Sources holds the Appliers of every Git source of the controller — the
// configuration file's (ConfigSourceID) and one per GitSource — and
// stands in for them where the reconciler and the Istio Publisher need
// one: it implements kube/controller's Reverter and kube/istio's
// Declarations and RolloutDeclarations by dispatching on the source a
// Rollout was applied from (SourceOf), and merges their Wake channels.
type Sources struct {
	// reader tells a GitSource that exists but whose Applier is not
	// registered yet from one that was deleted.
	reader client.Reader

	mu       sync.RWMutex
	appliers map[string]*Applier

	wake       chan event.GenericEvent
	wakeWanted atomic.Bool

	stateWake       chan event.GenericEvent
	stateWakeWanted atomic.Bool
}

// NewSources returns an empty registry. r reads GitSources (the manager's
// cached client).
func NewSources(r client.Reader) *Sources {
	return &Sources{reader: r, appliers: map[string]*Applier{}, wake: make(chan event.GenericEvent, 256),
		stateWake: make(chan event.GenericEvent, 256)}
}

// Add registers a; call it before a.Start. Its Rollouts to wake go out on
// Sources.Wake. Registering a second Applier of one ID is an error.
func (s *Sources) Add(a *Applier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := a.ID()
	if _, dup := s.appliers[id]; dup {
		return fmt.Errorf("git source %s is already registered", id)
	}
	a.wake = s.wake
	a.wakeWanted.Store(s.wakeWanted.Load())
	a.stateWake = s.stateWake
	a.stateWakeWanted.Store(s.stateWakeWanted.Load())
	s.appliers[id] = a
	return nil
}

// Remove unregisters the Applier of id, if any, and returns it.
func (s *Sources) Remove(id string) *Applier {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appliers[id]
	delete(s.appliers, id)
	return a
}

// Get returns the Applier of id, or nil.
func (s *Sources) Get(id string) *Applier {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.appliers[id]
}

// Wake delivers every registered Applier's Rollouts to publish again
// (Applier.Wake). Ask for it before the first Add; once asked for, it must
// be consumed.
func (s *Sources) Wake() <-chan event.GenericEvent {
	s.wakeWanted.Store(true)
	return s.wake
}

// StateWake delivers every registered Applier's Rollouts whose Git state
// changed (Applier.StateWake). Ask for it before the first Add; once asked
// for, it must be consumed.
func (s *Sources) StateWake() <-chan event.GenericEvent {
	s.stateWakeWanted.Store(true)
	return s.stateWake
}

// applierOf returns the Applier ro came from. A Rollout no source applied
// (kubectl, Argo CD) answers to the configuration file's source, which is
// what it did when that was the only one: Git may declare the routing of
// a Rollout applied by other means. known is false when ro's source is
// not registered; err is set when it is a GitSource that exists but has
// not been started yet.
func (s *Sources) applierOf(ctx context.Context, ro *v1alpha1.Rollout) (a *Applier, known bool, err error) {
	id := SourceOf(ro)
	if id == "" {
		id = ConfigSourceID
	}
	if a := s.Get(id); a != nil {
		return a, true, nil
	}
	ns, name, ok := strings.Cut(id, "/")
	if !ok || s.reader == nil {
		return nil, false, nil
	}
	var gs v1alpha1.GitSource
	switch err := s.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &gs); {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading %s: %w", describeSource(id), err)
	}
	return nil, false, fmt.Errorf("%s is not running (invalid, or starting): %w", describeSource(id), errNotSynced)
}

// DeclaredFor implements kube/istio's RolloutDeclarations: the objects
// as the source ro came from declares them. A Rollout whose source is
// gone (a GitSource deleted, the configuration's git section removed) has
// no declarations, as if its files were deleted: the Publisher renders
// its own objects. One whose GitSource exists but has not synced yet
// fails, so that Git's objects are never replaced by Sluice's own.
func (s *Sources) DeclaredFor(ctx context.Context, ro *v1alpha1.Rollout, virtualService, destinationRule string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error) {
	a, known, err := s.applierOf(ctx, ro)
	if err != nil || !known {
		return nil, nil, err
	}
	return a.Declared(ro.Namespace, virtualService, destinationRule)
}

// Declared implements kube/istio's Declarations for a caller that has no
// Rollout at hand: the configuration file's source answers, as it did
// when it was the only one.
func (s *Sources) Declared(ns, virtualService, destinationRule string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error) {
	a := s.Get(ConfigSourceID)
	if a == nil {
		return nil, nil, nil
	}
	return a.Declared(ns, virtualService, destinationRule)
}

// Revert implements kube/controller's Reverter: the source ro came from
// pushes the revert commit.
func (s *Sources) Revert(ctx context.Context, ro *v1alpha1.Rollout, r engine.GitRevert) (gitsync.RevertResult, error) {
	a, known, err := s.applierOf(ctx, ro)
	switch {
	case err != nil:
		return gitsync.RevertResult{}, fmt.Errorf("rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	case !known:
		return gitsync.RevertResult{}, fmt.Errorf("rollout %s/%s was not applied by any running Git source; revert it to %s in Git by hand", ro.Namespace, ro.Name, r.StableRevision)
	}
	return a.Revert(ctx, ro, r)
}
