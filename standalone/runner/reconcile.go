package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/rolloutmetrics"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/window"
	"github.com/sluicehq/sluice/standalone/store"
)

// idle is how long the loop sleeps when nothing is due; Git, the data
// plane, analysis and the API wake it earlier.
const idle = 30 * time.Second

// stepped is one Rollout's step: what the engine decided and the record
// that persists it, waiting to be saved and then acted on.
type stepped struct {
	key     string
	ro      *v1alpha1.Rollout
	out     engine.Output
	command *commandRequest
	// prev is the status the step started from; revert what it learnt of
	// its Git revert (forgotten once the step is saved).
	prev   *v1alpha1.RolloutStatus
	revert *engine.RevertResult
	rec    store.Record
	// retired: the Rollout left Git and this step retired it.
	retired bool
	// took is the time the step took, before it was persisted.
	took time.Duration
	// src is the snapshot's Rollout the step ran from (shared, read-only).
	src *v1alpha1.Rollout
	// same: the step leaves the Rollout as the file holds it (see
	// unchangedStep), so it is neither encoded nor written, and a view
	// built from the same spec stays as it is.
	same bool
}

// pass reconciles every Rollout once — step each, persist every step in
// one transaction, publish all plans together, then act — and returns
// when to look again.
func (r *Runner) pass(ctx context.Context) time.Duration {
	r.passes.Add(1)
	defer func(start time.Time) { r.busy.Add(int64(time.Since(start))) }(time.Now())
	now := r.o.Now()
	next := idle
	prev, err := r.storedState()
	if err != nil {
		r.o.Log.Error(err, "read state; retrying")
		return time.Second
	}
	gs := r.o.Source.State()
	if gs.Applied == nil {
		// No good commit yet: keep serving what was stored.
		r.failNotFound(nil)
		return next
	}
	snap := gs.Applied

	// Sized once: a step is 872 bytes, and growing the slice by doubling
	// made as many bytes again of arrays left behind (1,000 Rollouts:
	// 0.85 MiB of them) in the pass that persists and publishes.
	steps := make([]stepped, 0, len(snap.Objects))
	desired := make(map[string]bool, len(snap.Objects))
	for _, d := range snap.Objects {
		if d.Rollout == nil {
			continue
		}
		// The snapshot's Rollouts are shared and read-only, and the engine
		// only reads its input: a shallow copy takes the default namespace
		// and the stored status without copying the spec at every pass.
		ro := new(v1alpha1.Rollout)
		*ro = *d.Rollout
		if ro.Namespace == "" {
			ro.Namespace = r.o.DefaultNamespace
		}
		key := store.Key(ro.Namespace, ro.Name)
		desired[key] = true
		began := time.Now()
		st, ok := r.stepOne(key, ro, d, prev[key], now)
		if !ok {
			// The engine refused the step (stepOne logged why).
			r.metrics.ObserveReconcile(rolloutmetrics.ResultError, time.Since(began))
			continue
		}
		st.took = time.Since(began)
		steps = append(steps, st)
		// Compared in place: a step is too big to copy for it.
		last := &steps[len(steps)-1]
		last.same = unchangedStep(last, prev[key])
	}
	for key, s := range prev {
		if desired[key] {
			continue
		}
		began := time.Now()
		if st, ok := r.retire(key, s, snap.Commit.SHA, now); ok {
			st.took = time.Since(began)
			steps = append(steps, st)
		}
	}
	r.failNotFound(desired)

	done, err := r.persist(steps)
	if err != nil {
		// Nothing is on disk, so nothing is acted on: the next pass
		// repeats every step.
		r.o.Log.Error(err, "persist the pass's steps; retrying", "rollouts", len(steps))
		return time.Second
	}
	// Publish every plan in one update, after every status is on disk.
	if err := r.publish(ctx); err != nil {
		r.o.Log.Error(err, "publish traffic plans; retrying")
		return time.Second
	}
	for _, st := range done {
		if st.retired {
			continue
		}
		r.act(ctx, st, snap)
		if d := st.out.RequeueAfter; d > 0 && d < next {
			next = d
		}
	}
	r.flushOutbox()
	for _, cs := range r.pending {
		if len(cs) > 0 {
			return 0 // one command per rollout per step: go again at once
		}
	}
	return next
}

// stepOne runs the engine for one Rollout and returns the step with the
// record that persists it.
func (r *Runner) stepOne(key string, ro *v1alpha1.Rollout, d gitsync.Desired, prev store.Rollout, now time.Time) (stepped, bool) {
	if prev.Status != nil {
		// Shared with the stored state, which is only ever replaced.
		ro.Status = *prev.Status
	}
	// The engine copies what it keeps of the provenance, which then reads
	// back from the file as asStored has it (unchangedStep compares).
	prov := d.Provenance
	if t := prov.CommitTime; t != nil {
		prov.CommitTime = asStored(*t)
	}
	obs := engine.Observations{Git: &prov, Window: window.Evaluate(ro.Spec.Windows, now)}
	if prev.Plan != nil {
		obs.DataPlane = r.o.Plane.Observe(*prev.Plan)
	}
	for _, run := range ro.Status.Analysis {
		if run.Terminated || run.Phase.Completed() {
			continue
		}
		if o, _, ok := r.o.Analysis.Observe(run.Name); ok {
			obs.Analysis = append(obs.Analysis, o)
		}
	}
	obs.GitRevert = r.revertObservation(key, &ro.Status)
	var cmd *commandRequest
	if cs := r.pending[key]; len(cs) > 0 {
		cmd = &cs[0]
		r.pending[key] = cs[1:]
		obs.Commands = []engine.Command{cmd.cmd}
	}
	out, err := engine.Step(engine.Input{Rollout: ro, Observations: obs, Now: now})
	if err != nil {
		r.o.Log.Error(err, "engine step", "rollout", key)
		if cmd != nil {
			cmd.reply <- commandReply{err: err}
		}
		return stepped{}, false
	}
	runs := map[string]json.RawMessage{}
	for _, run := range out.Status.Analysis {
		if _, saved, ok := r.o.Analysis.Observe(run.Name); ok && saved != nil {
			runs[run.Name] = saved
		}
	}
	rec := store.Record{Time: now, Status: &out.Status, Plan: &out.Plan, Events: out.Events, Runs: runs,
		Outbox: r.notifications(key, out.Events, &out.Status, now)}
	return stepped{key: key, ro: ro, out: out, command: cmd, prev: prev.Status, revert: obs.GitRevert, rec: rec, src: d.Rollout}, true
}

// asStored is t as the state file gives it back: a metav1.Time keeps
// whole seconds and decodes in local time (the commit's own zone is not
// kept).
func asStored(t metav1.Time) *metav1.Time {
	m := metav1.NewTime(t.Truncate(time.Second).Local())
	return &m
}

// unchangedStep reports whether a step would leave the Rollout exactly
// as the file holds it, which most steps of a pass do (a Rollout in a
// pause, or at rest): the same status and plan, no events, messages,
// command or run state. Comparing the values with what the store read
// back spares encoding every Rollout at every pass to find the few that
// changed; equal values encode to the bytes the file holds, so the store
// would find them unchanged too (store.Result.Unchanged). Anything else
// goes to the store, which compares the bytes.
func unchangedStep(st *stepped, prev store.Rollout) bool {
	if st.command != nil || st.retired || len(st.rec.Events) > 0 || len(st.rec.Outbox) > 0 {
		return false
	}
	// Run state lives beside the status in the file; the store compares it.
	if len(st.rec.Runs) > 0 || len(st.out.Status.Analysis) > 0 {
		return false
	}
	if prev.Status == nil || prev.Plan == nil {
		return false
	}
	return reflect.DeepEqual(&st.out.Status, prev.Status) && reflect.DeepEqual(&st.out.Plan, prev.Plan)
}

// storedState is the state file's Rollouts by key. The runner is their
// only writer, so it reads them all once and then only those it wrote,
// as the store returns them: a status read back is what the engine sees
// after a restart too (metav1.Time keeps whole seconds in the file), so
// both see the same.
func (r *Runner) storedState() (map[string]store.Rollout, error) {
	if r.stored != nil {
		return r.stored, nil
	}
	list, err := r.o.Store.List()
	if err != nil {
		return nil, err
	}
	r.stored = make(map[string]store.Rollout, len(list))
	for _, s := range list {
		r.stored[s.Key] = s
	}
	return r.stored, nil
}

// reread takes a Rollout just written from the store; if that fails, the
// next pass reads every Rollout again.
func (r *Runner) reread(key string) {
	if r.stored == nil {
		return
	}
	s, err := r.o.Store.Get(key)
	if err != nil {
		r.o.Log.Error(err, "read back a step just saved; reading all state at the next pass", "rollout", key)
		r.stored = nil
		return
	}
	r.stored[key] = s
}

// persist saves the steps of a pass in one transaction (a step that
// changes nothing costs no write) and makes those on disk the runner's
// state: metrics, endpoints and the views the API reads. It returns them;
// a step that is not on disk is not acted on, and the next pass repeats
// it. An error means nothing was saved.
func (r *Runner) persist(steps []stepped) ([]stepped, error) {
	// at[i] is steps[i]'s change in the batch; unchanged steps have none.
	changes := make([]store.Change, 0, len(steps))
	at := make([]int, len(steps))
	for i, st := range steps {
		at[i] = -1
		if !st.same {
			at[i] = len(changes)
			changes = append(changes, store.Change{Key: st.key, Record: st.rec})
		}
	}
	began := time.Now()
	written, err := r.o.Store.CommitAll(changes)
	res := make([]store.Result, len(steps))
	for i := range steps {
		switch {
		case err != nil:
		case at[i] < 0:
			res[i] = store.Result{Unchanged: true}
			r.unchanged.Add(1)
		default:
			res[i] = written[at[i]]
		}
	}
	// A step is done when it is on disk: its time is its own plus the
	// pass's one write, which it shares with the pass's other steps
	// (sluice_rollout_reconcile_duration_seconds, as the controller's
	// reconcile includes its status write).
	write := time.Since(began)
	for i, st := range steps {
		result := rolloutmetrics.ResultSuccess
		if err != nil || res[i].Err != nil {
			result = rolloutmetrics.ResultError
		}
		r.metrics.ObserveReconcile(result, st.took+write)
	}
	if err != nil {
		for _, st := range steps {
			if st.command != nil {
				st.command.reply <- commandReply{err: err}
			}
		}
		return nil, err
	}
	for i, st := range steps {
		if res[i].Err == nil && !res[i].Unchanged {
			r.reread(st.key)
		}
	}
	done := make([]stepped, 0, len(steps))
	views := make(map[string]view, len(steps))
	for i, st := range steps {
		if err := res[i].Err; err != nil {
			r.o.Log.Error(err, "persist step", "rollout", st.key)
			if st.command != nil {
				st.command.reply <- commandReply{err: err}
			}
			continue
		}
		r.revertObserved(st.key, st.revert)
		r.record(st.key, st.prev, &st.out.Status)
		if !st.retired {
			r.showRuns(st.key, &st.out.Status, st.rec.Runs, false)
		}
		p := st.out.Plan
		if !st.retired {
			r.setEndpoints(&p, &st.out.Status)
		}
		done = append(done, st)
		if st.same && r.viewFrom(st.key, st.src) {
			continue // the view shows this spec, status and plan already
		}
		// The view shows the status and plan as the file holds them, which
		// the runner keeps anyway (storedState): one copy of each, not two.
		vp := &p
		if s, ok := r.stored[st.key]; ok && s.Status != nil && s.Plan != nil {
			st.ro.Status, vp = *s.Status, s.Plan
		} else {
			st.ro.Status = st.out.Status
		}
		views[st.key] = view{ro: st.ro, plan: vp, src: st.src}
	}
	r.setViews(views)
	return done, nil
}

// viewFrom reports whether the Rollout's view was built from the spec src.
func (r *Runner) viewFrom(key string, src *v1alpha1.Rollout) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.views[key]
	return ok && src != nil && v.src == src
}

// act carries out one persisted, published step: analysis, Git write-back
// and the answer to a command (notifications leave through the outbox).
func (r *Runner) act(ctx context.Context, st stepped, snap *gitsync.Snapshot) {
	for _, a := range st.out.Actions {
		switch a.Kind {
		case engine.ActionStopAnalysis:
			r.o.Analysis.Stop(a.Run.Name)
		case engine.ActionGitRevert:
			r.revert(ctx, st, *a.Revert)
		}
	}
	// Level-triggered: every run the status says is running must be running,
	// which also resumes runs after a restart from their saved state.
	for _, run := range st.out.Status.Analysis {
		if run.Terminated || run.Phase.Completed() {
			continue
		}
		r.ensureRun(st, run, snap)
	}
	if st.command != nil {
		st.command.reply <- commandReply{record: st.out.Status.LastCommand}
	}
}

func (r *Runner) ensureRun(st stepped, run v1alpha1.AnalysisRunStatus, snap *gitsync.Snapshot) {
	var templates []*v1alpha1.AnalysisTemplate
	for _, ref := range run.Templates {
		d, ok := snap.Lookup(gitsync.ObjectRef{Kind: "AnalysisTemplate", Namespace: templateNamespace(snap, st.ro.Namespace, ref.Name), Name: ref.Name})
		if !ok || d.AnalysisTemplate == nil {
			r.o.Log.Info("analysis template not found", "rollout", st.key, "run", run.Name, "template", ref.Name)
			continue
		}
		templates = append(templates, d.AnalysisTemplate)
	}
	saved, err := r.o.Store.Run(st.key, run.Name)
	if err != nil {
		saved = nil
	}
	ar := engine.AnalysisRun{Name: run.Name, Kind: run.Kind, Templates: run.Templates, Args: run.Args}
	if err := r.o.Analysis.Start(st.key, ar, templates, saved); err != nil {
		r.o.Log.Error(err, "start analysis run", "rollout", st.key, "run", run.Name)
	}
}

// templateNamespace finds the namespace a template reference resolves in:
// the Rollout's, falling back to a manifest without one (which the runner
// places in the default namespace).
func templateNamespace(snap *gitsync.Snapshot, ns, name string) string {
	for _, cand := range []string{ns, ""} {
		if _, ok := snap.Lookup(gitsync.ObjectRef{Kind: "AnalysisTemplate", Namespace: cand, Name: name}); ok {
			return cand
		}
	}
	return ns
}

// retire stops managing a Rollout removed from Git at commit: its traffic
// stays at 100% stable, served for as long as Sluice runs, never removed
// abruptly. The spec left Git with the manifest, so the retired plan is cut
// down from the plan in force. It returns the retiring step, or false for
// a Rollout retired before.
func (r *Runner) retire(key string, s store.Rollout, commit string, now time.Time) (stepped, bool) {
	if s.Plan == nil || s.Status == nil {
		return stepped{}, false
	}
	if engine.Retired(s.Status) {
		r.mu.RLock()
		_, known := r.views[key]
		r.mu.RUnlock()
		if !known { // after a restart
			r.setViews(map[string]view{key: {ro: retiredRollout(key, s.Status), plan: s.Plan}})
		}
		return stepped{}, false
	}
	out := engine.Retire(engine.RetireInput{
		Input:   engine.Input{Rollout: retiredRollout(key, s.Status.DeepCopy()), Now: now},
		Commit:  commit,
		InForce: s.Plan,
	})
	for _, a := range out.Actions {
		if a.Kind == engine.ActionStopAnalysis {
			r.o.Analysis.Stop(a.Run.Name)
		}
	}
	rec := store.Record{Time: now, Status: &out.Status, Plan: &out.Plan, Events: out.Events,
		Outbox: r.notifications(key, out.Events, &out.Status, now)}
	return stepped{key: key, ro: retiredRollout(key, s.Status), out: out, prev: s.Status, rec: rec, retired: true}, true
}

func retiredRollout(key string, st *v1alpha1.RolloutStatus) *v1alpha1.Rollout {
	ns, name, _ := store.SplitKey(key)
	ro := &v1alpha1.Rollout{}
	ro.Namespace, ro.Name, ro.Status = ns, name, *st
	return ro
}

// publish serves the plan of every Rollout known, managed or retired.
func (r *Runner) publish(ctx context.Context) error {
	r.mu.RLock()
	keys := make([]string, 0, len(r.views))
	for k := range r.views {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	plans := make([]plan.Plan, 0, len(keys))
	for _, k := range keys {
		if p := r.views[k].plan; p != nil {
			plans = append(plans, *p)
		}
	}
	r.mu.RUnlock()
	if err := r.o.Plane.SetPlans(ctx, plans); err != nil {
		return fmt.Errorf("set plans: %w", err)
	}
	return nil
}

// setViews replaces the views of a pass's steps at once, with one signal
// to the API's watchers.
func (r *Runner) setViews(vs map[string]view) {
	if len(vs) == 0 {
		return
	}
	r.mu.Lock()
	maps.Copy(r.views, vs)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// failNotFound answers commands for Rollouts that are not in Git.
func (r *Runner) failNotFound(desired map[string]bool) {
	for k, cs := range r.pending {
		if desired[k] {
			continue
		}
		for _, c := range cs {
			c.reply <- commandReply{err: fmt.Errorf("rollout %s is not managed from Git", k)}
		}
		delete(r.pending, k)
	}
}
