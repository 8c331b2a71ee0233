package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/window"
	"github.com/sluicehq/sluice/standalone/store"
)

// idle is how long the loop sleeps when nothing is due; Git, the data
// plane, analysis and the API wake it earlier.
const idle = 30 * time.Second

// stepped is one Rollout's step, persisted and waiting to be acted on.
type stepped struct {
	key     string
	ro      *v1alpha1.Rollout
	out     engine.Output
	command *commandRequest
}

// pass reconciles every Rollout once — persist each step, publish all plans
// together, then act — and returns when to look again.
func (r *Runner) pass(ctx context.Context) time.Duration {
	now := r.o.Now()
	next := idle
	stored, err := r.o.Store.List()
	if err != nil {
		r.o.Log.Error(err, "read state; retrying")
		return time.Second
	}
	prev := make(map[string]store.Rollout, len(stored))
	for _, s := range stored {
		prev[s.Key] = s
	}
	gs := r.o.Source.State()
	if gs.Applied == nil {
		// No good commit yet: keep serving what was stored.
		r.failNotFound(nil)
		return next
	}
	snap := gs.Applied

	var done []stepped
	desired := map[string]bool{}
	for _, d := range snap.Objects {
		if d.Rollout == nil {
			continue
		}
		ro := d.Rollout.DeepCopy()
		if ro.Namespace == "" {
			ro.Namespace = r.o.DefaultNamespace
		}
		key := store.Key(ro.Namespace, ro.Name)
		desired[key] = true
		st, ok := r.stepOne(ctx, key, ro, d, prev[key], now)
		if !ok {
			continue
		}
		done = append(done, st)
		if d := st.out.RequeueAfter; d > 0 && d < next {
			next = d
		}
	}
	for key, s := range prev {
		if !desired[key] {
			r.retire(key, s, now)
		}
	}
	r.failNotFound(desired)

	// Publish every plan in one update, after every status is on disk.
	if err := r.publish(ctx); err != nil {
		r.o.Log.Error(err, "publish traffic plans; retrying")
		return time.Second
	}
	for _, st := range done {
		r.act(ctx, st, snap)
	}
	for _, cs := range r.pending {
		if len(cs) > 0 {
			return 0 // one command per rollout per step: go again at once
		}
	}
	return next
}

// stepOne runs the engine for one Rollout and persists the result. Only a
// persisted step is acted on.
func (r *Runner) stepOne(ctx context.Context, key string, ro *v1alpha1.Rollout, d gitsync.Desired, prev store.Rollout, now time.Time) (stepped, bool) {
	if prev.Status != nil {
		ro.Status = *prev.Status.DeepCopy()
	}
	obs := engine.Observations{Git: d.Provenance.DeepCopy(), Window: window.Evaluate(ro.Spec.Windows, now)}
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
	rec := store.Record{Time: now, Status: &out.Status, Plan: &out.Plan, Events: out.Events, Runs: runs}
	if _, err := r.o.Store.Commit(key, rec); err != nil {
		// Not on disk, so not acted on: the next pass repeats the step.
		r.o.Log.Error(err, "persist step", "rollout", key)
		if cmd != nil {
			cmd.reply <- commandReply{err: err}
		}
		return stepped{}, false
	}
	ro.Status = out.Status
	p := out.Plan
	r.setEndpoints(&p, &out.Status)
	r.setView(key, view{ro: ro, plan: &p})
	return stepped{key: key, ro: ro, out: out, command: cmd}, true
}

// act carries out one persisted, published step: analysis, Git write-back,
// notifications, and the answer to a command.
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
	if r.o.Notifier != nil {
		for _, ev := range st.out.Events {
			r.o.Notifier.Notify(notify.FromEvent(st.ro.Namespace, st.ro.Name, ev, &st.out.Status, r.o.Now()))
		}
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

// reasonRemoved marks a Rollout that left Git.
const reasonRemoved = "RemovedFromGit"

// retire stops managing a Rollout removed from Git: its traffic stays at
// 100% stable, served for as long as Sluice runs, never removed abruptly.
func (r *Runner) retire(key string, s store.Rollout, now time.Time) {
	if s.Plan == nil || s.Status == nil {
		return
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Reason == reasonRemoved {
		r.setView(key, view{ro: retiredRollout(key, s.Status), plan: s.Plan})
		return
	}
	p := stableOnly(*s.Plan)
	st := s.Status.DeepCopy()
	for i := range st.Analysis {
		if run := &st.Analysis[i]; !run.Terminated && !run.Phase.Completed() {
			r.o.Analysis.Stop(run.Name)
			run.Terminated = true
			run.Message = "stopped: rollout removed from Git"
		}
	}
	st.CanaryRevision, st.CurrentStepIndex, st.Pause, st.Abort = "", nil, nil, nil
	st.Phase = v1alpha1.PhaseHealthy
	st.Message = "removed from Git: traffic left at 100% stable revision " + st.StableRevision + "; no longer managed"
	st.Traffic.PlanVersion, st.Traffic.AcknowledgedVersion = p.Version, ""
	st.Traffic.StableWeight, st.Traffic.CanaryWeight, st.Traffic.MirrorPercent, st.Traffic.Routes = 100, 0, 0, nil
	for _, typ := range []string{v1alpha1.ConditionProgressing, v1alpha1.ConditionPaused, v1alpha1.ConditionAborted} {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reasonRemoved, Message: st.Message, LastTransitionTime: metav1.NewTime(now)})
	}
	// Ready's reason is the marker that the retirement is done.
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: reasonRemoved, Message: st.Message, LastTransitionTime: metav1.NewTime(now)})
	ev := engine.Event{Type: engine.EventWarning, Reason: reasonRemoved, Message: st.Message}
	if _, err := r.o.Store.Commit(key, store.Record{Time: now, Status: st, Plan: &p, Events: []engine.Event{ev}}); err != nil {
		r.o.Log.Error(err, "persist retirement", "rollout", key)
		return
	}
	r.setView(key, view{ro: retiredRollout(key, st), plan: &p})
	if r.o.Notifier != nil {
		ns, name, _ := store.SplitKey(key)
		r.o.Notifier.Notify(notify.FromEvent(ns, name, ev, st, now))
	}
}

func retiredRollout(key string, st *v1alpha1.RolloutStatus) *v1alpha1.Rollout {
	ns, name, _ := store.SplitKey(key)
	ro := &v1alpha1.Rollout{}
	ro.Namespace, ro.Name, ro.Status = ns, name, *st
	return ro
}

// stableOnly keeps each host's catch-all route at 100% stable with the
// route's policy, and drops hosts that only ever served the canary (blue/
// green preview hosts).
func stableOnly(p plan.Plan) plan.Plan {
	out := plan.Plan{Service: p.Service, Namespace: p.Namespace}
	for _, s := range p.Subsets {
		if s.Name == plan.Stable {
			out.Subsets = append(out.Subsets, s)
		}
	}
	for _, h := range p.Hosts {
		last := h.Routes[len(h.Routes)-1]
		if !slices.ContainsFunc(last.Destinations, func(d plan.Destination) bool { return d.Subset == plan.Stable }) {
			continue
		}
		out.Hosts = append(out.Hosts, plan.Host{Name: h.Name, Port: h.Port, Routes: []plan.Route{{
			Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}, Policy: last.Policy,
		}}})
	}
	out.Seal()
	return out
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

func (r *Runner) setView(key string, v view) {
	r.mu.Lock()
	r.views[key] = v
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
