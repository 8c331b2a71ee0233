package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/standalone/store"
)

// The Runner serves the HTTP API.
var (
	_ rolloutapi.Backend     = (*Runner)(nil)
	_ rolloutapi.Watcher     = (*Runner)(nil)
	_ rolloutapi.GitReporter = (*Runner)(nil)
)

// List returns every Rollout the runner knows, retired ones included.
// Views are converted outside the lock: the conversion asks the engine
// what each command would do (rolloutapi.Preview), which the loop need not
// wait for.
func (r *Runner) List(context.Context) ([]rolloutapi.Rollout, error) {
	r.mu.RLock()
	views := make([]view, 0, len(r.views))
	for _, v := range r.views {
		views = append(views, v)
	}
	r.mu.RUnlock()
	out := make([]rolloutapi.Rollout, 0, len(views))
	// One source feeds them all: its state is built once and shared.
	git := r.o.Source.State().SyncStatus()
	for _, v := range views {
		ro := toAPI(v)
		ro.Status.GitSync = git
		out = append(out, ro)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// Get returns one Rollout with what the runner knows beyond its status
// (rolloutapi.Detail).
func (r *Runner) Get(_ context.Context, namespace, name string) (rolloutapi.Rollout, error) {
	key := store.Key(namespace, name)
	v, err := r.view(key)
	if err != nil {
		return rolloutapi.Rollout{}, err
	}
	ro := r.withGit(toAPI(v))
	ro.Detail = r.detail(key, v)
	return ro, nil
}

func (r *Runner) view(key string) (view, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.views[key]
	if !ok {
		return view{}, fmt.Errorf("%w: rollout %s", rolloutapi.ErrNotFound, key)
	}
	return v, nil
}

// History returns the last events of a Rollout from the store, which keeps
// them across restarts and after the Rollout left Git.
func (r *Runner) History(_ context.Context, namespace, name string, limit int) ([]rolloutapi.Event, error) {
	evs, err := r.o.Store.History(store.Key(namespace, name), limit)
	if err != nil {
		return nil, fmt.Errorf("history of %s/%s: %w", namespace, name, err)
	}
	if len(evs) == 0 {
		if _, err := r.view(store.Key(namespace, name)); err != nil {
			return nil, err
		}
	}
	out := make([]rolloutapi.Event, 0, len(evs))
	for _, e := range evs {
		out = append(out, rolloutapi.Event{Time: e.Time, Type: string(e.Type), Reason: e.Reason, Message: e.Message})
	}
	return out, nil
}

// Command queues a command for the Rollout's next step and waits for the
// engine's verdict.
func (r *Runner) Command(ctx context.Context, namespace, name string, req rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	if err := rolloutapi.ValidCommand(req.Kind); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	if _, err := r.view(store.Key(namespace, name)); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	id := newID()
	c := commandRequest{
		key:   store.Key(namespace, name),
		cmd:   engine.Command{ID: id, Kind: req.Kind, By: req.By},
		reply: make(chan commandReply, 1),
	}
	select {
	case r.commands <- c:
	case <-ctx.Done():
		return rolloutapi.CommandResponse{}, fmt.Errorf("%w: the runner did not take the command: %v", rolloutapi.ErrUnavailable, ctx.Err())
	}
	select {
	case rep := <-c.reply:
		if rep.err != nil {
			return rolloutapi.CommandResponse{}, fmt.Errorf("%w: %v", rolloutapi.ErrUnavailable, rep.err)
		}
		if rep.record == nil || rep.record.ID != id {
			return rolloutapi.CommandResponse{}, fmt.Errorf("%w: the command was not recorded", rolloutapi.ErrUnavailable)
		}
		return rolloutapi.ResponseOf(*rep.record), nil
	case <-ctx.Done():
		return rolloutapi.CommandResponse{}, fmt.Errorf("%w: no answer from the engine yet (the command stays queued): %v", rolloutapi.ErrUnavailable, ctx.Err())
	}
}

func toAPI(v view) rolloutapi.Rollout { return rolloutapi.FromRollout(v.ro, v.plan) }

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b)
}
