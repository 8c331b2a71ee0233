package runner

import (
	"context"

	"github.com/sluicehq/sluice/rolloutapi"
)

// The Git state is the source's, not a step's: it is read from the Syncer
// whenever the API is, never persisted, so that a rejected push shows at
// once although no Rollout steps for it (the last good commit stays in
// force, and with it every Rollout's spec).

// withGit adds the source's state to a Rollout the API returns.
func (r *Runner) withGit(ro rolloutapi.Rollout) rolloutapi.Rollout {
	ro.Status.GitSync = r.o.Source.State().SyncStatus()
	return ro
}

// GitSources is the runner's one source (rolloutapi.GitReporter): what a
// client needs to tell a rejected head when no Rollout exists yet (the
// first commit was rejected) or none is named.
func (r *Runner) GitSources(context.Context) ([]rolloutapi.GitSource, error) {
	st := r.o.Source.State()
	gs := rolloutapi.GitSource{GitSyncStatus: *st.SyncStatus()}
	if st.Applied != nil {
		gs.Repository = st.Applied.Repository
	}
	return []rolloutapi.GitSource{gs}, nil
}

// signalGit wakes the API's watchers when the source's state changed
// since the last call; the loop calls it after each pass.
func (r *Runner) signalGit() {
	gen := r.o.Source.State().Generation
	if gen == r.gitGeneration {
		return
	}
	r.gitGeneration = gen
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}
