package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/standalone/store"
)

// What a step decides that happens outside the loop must survive a crash
// between the step being saved and it being done:
//
//   - The Git revert is recorded in the status itself (status.gitRevert):
//     the engine asks for an attempt, the runner pushes in the background
//     and reports the result at the Rollout's next step. After a restart
//     an attempt the status says is under way but no goroutine runs is
//     reported interrupted, and the engine asks again; gitsync answers a
//     revert that already landed with "unchanged", so the commit appears
//     once.
//   - Notifications go to the store's outbox in the step's transaction and
//     leave it only once every target is done with them; each carries the
//     outbox ID as its delivery ID, so a repeat after a crash is
//     recognisable.
//   - Analysis runs need nothing more: every run the status says is
//     running is started after a restart (ensureRun), from its saved
//     state.

// revertTimeout bounds one write-back attempt; the engine asks again
// after a failure.
const revertTimeout = 2 * time.Minute

// actions is the state of the work running outside the loop.
type actions struct {
	// reverting: Rollout key -> failed revision of the attempt running.
	reverting map[string]string
	// reverted: results not yet handed to a step.
	reverted map[string]engine.RevertResult
	// sending: outbox IDs handed to the notifier.
	sending map[string]bool
}

// revertObservation is what the Rollout's next step learns of its Git
// revert: a finished attempt, or an attempt the status records that
// nothing runs (lost in a restart).
func (r *Runner) revertObservation(key string, st *v1alpha1.RolloutStatus) *engine.RevertResult {
	r.workMu.Lock()
	defer r.workMu.Unlock()
	if res, ok := r.work.reverted[key]; ok {
		return &res
	}
	if lost, ok := engine.RevertOutstanding(st); ok && r.work.reverting[key] == "" {
		return &lost
	}
	return nil
}

// revertObserved forgets a result once the step that saw it is saved.
func (r *Runner) revertObserved(key string, res *engine.RevertResult) {
	if res == nil {
		return
	}
	r.workMu.Lock()
	defer r.workMu.Unlock()
	if got, ok := r.work.reverted[key]; ok && got == *res {
		delete(r.work.reverted, key)
	}
}

// revert runs one write-back attempt in the background: a slow or refused
// push must not hold up the loop, and traffic is at stable already.
func (r *Runner) revert(ctx context.Context, st stepped, g engine.GitRevert) {
	r.workMu.Lock()
	if r.work.reverting[st.key] != "" {
		r.workMu.Unlock()
		return
	}
	r.work.reverting[st.key] = g.FailedRevision
	r.workMu.Unlock()

	req := gitsync.RevertRequest{GitRevert: g}
	for _, run := range st.out.Status.Analysis {
		if run.Phase == v1alpha1.AnalysisFailed || run.Phase == v1alpha1.AnalysisError {
			req.Analysis = append(req.Analysis, run.Metrics...)
		}
	}
	go func() {
		res := engine.RevertResult{FailedRevision: g.FailedRevision, Attempt: g.Attempt}
		if r.o.Reverter == nil {
			res.Err = "rollback.gitRevert is set but this runner has no Git write-back configured (git.writeBack)"
		} else {
			actx, cancel := context.WithTimeout(ctx, revertTimeout)
			out, err := r.o.Reverter.Revert(actx, req)
			cancel()
			if err != nil {
				res.Err = fmt.Sprintf("%s: %v", gitsync.KindOf(err), err)
			} else {
				res.Outcome, res.Commit = string(out.Outcome), out.Commit
			}
		}
		r.o.Log.Info("git revert attempt", "rollout", st.key, "failed", g.FailedRevision,
			"stable", g.StableRevision, "outcome", res.Outcome, "commit", res.Commit, "error", res.Err)
		r.workMu.Lock()
		delete(r.work.reverting, st.key)
		r.work.reverted[st.key] = res
		r.workMu.Unlock()
		r.poke()
	}()
}

// poke asks the loop for a pass.
func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// outboxKind is the store's Message.Kind of notifications.
const outboxKind = "notification"

// notifications are the outbox messages of a step's events.
func (r *Runner) notifications(key string, evs []engine.Event, st *v1alpha1.RolloutStatus, now time.Time) []store.Message {
	if r.o.Notifier == nil || len(evs) == 0 {
		return nil
	}
	ns, name, _ := store.SplitKey(key)
	out := make([]store.Message, 0, len(evs))
	for _, ev := range evs {
		body, err := json.Marshal(notify.FromEvent(ns, name, ev, st, now))
		if err != nil {
			r.o.Log.Error(err, "encode notification", "rollout", key, "reason", ev.Reason)
			continue
		}
		out = append(out, store.Message{Kind: outboxKind, Body: body})
	}
	return out
}

// flushOutbox hands every message not yet sent to the notifier; each
// leaves the outbox when the notifier is done with it, and one dropped
// untried is handed over again at a later pass.
func (r *Runner) flushOutbox() {
	msgs, err := r.o.Store.Outbox()
	if err != nil {
		r.o.Log.Error(err, "read the outbox; trying again at the next pass")
		return
	}
	for _, m := range msgs {
		if r.o.Notifier == nil || m.Kind != outboxKind {
			// Written when notifications were configured, or by a newer
			// Sluice: nobody here can send it.
			r.o.Log.Info("dropping an outbox message this runner cannot send", "id", m.ID, "kind", m.Kind, "rollout", m.Rollout)
			r.done(m.ID)
			continue
		}
		var n notify.Notification
		if err := json.Unmarshal(m.Body, &n); err != nil {
			r.o.Log.Error(err, "dropping an unreadable outbox message", "id", m.ID, "rollout", m.Rollout)
			r.done(m.ID)
			continue
		}
		r.workMu.Lock()
		busy := r.work.sending[m.ID]
		r.work.sending[m.ID] = true
		r.workMu.Unlock()
		if busy {
			continue
		}
		n.ID = m.ID
		id := m.ID
		r.o.Notifier.Send(n, func(err error) {
			if err == nil {
				r.done(id)
			}
			r.workMu.Lock()
			delete(r.work.sending, id)
			r.workMu.Unlock()
		})
	}
}

func (r *Runner) done(id string) {
	if err := r.o.Store.Done(id); err != nil {
		r.o.Log.Error(err, "mark an outbox message sent; it may be sent again", "id", id)
	}
}
