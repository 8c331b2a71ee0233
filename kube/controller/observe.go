package controller

import (
	"context"
	"errors"
	"fmt"
	"k8s.io/apimachinery/pkg/types"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
	"github.com/sluicehq/sluice/rollout/window"
)

// reconcileContext is what one reconcile gathered and decided. observe
// fills the observations once; step adds the engine's Output; the later
// stages only carry it out.
type reconcileContext struct {
	// ro is the Rollout as read; persist replaces its status with the
	// engine's, and the patcher keeps its resourceVersion current.
	ro *v1alpha1.Rollout
	// prev is the status as read, for counting completed runs.
	prev v1alpha1.RolloutStatus
	now  time.Time

	// specRevision is the revision the spec asks for ("" if the spec has
	// none, which step reports).
	specRevision string
	// replicaSets are the Rollout's own ReplicaSets by revision.
	replicaSets map[string]*appsv1.ReplicaSet
	// runs are the Rollout's own AnalysisRuns by name.
	runs map[string]*v1alpha1.AnalysisRun
	// built are runs the status lists as running that do not exist yet,
	// built during observe and created by act.
	built map[string]*v1alpha1.AnalysisRun

	obs engine.Observations
	out engine.Output
	// persisted is set once out.Status is in the API server.
	persisted bool
	// reverted is set when act ran a Git write-back attempt, whose result
	// the next reconcile takes in.
	reverted bool
	// droppedNotifications counts pending notifications persist left out
	// to keep the list within its bound.
	droppedNotifications int
}

func newReconcileContext(ro *v1alpha1.Rollout, now time.Time) *reconcileContext {
	return &reconcileContext{ro: ro, prev: *ro.Status.DeepCopy(), now: now, built: map[string]*v1alpha1.AnalysisRun{}}
}

// requeueAfter is when to look again: when the engine asks, and while the
// published plan waits for its acknowledgement, at least every poll.
func (rc *reconcileContext) requeueAfter(poll time.Duration) time.Duration {
	d := rc.out.RequeueAfter
	tr := rc.out.Status.Traffic
	if tr.PlanVersion != "" && tr.AcknowledgedVersion != tr.PlanVersion && tr.RejectedVersion != tr.PlanVersion {
		if d == 0 || poll < d {
			d = poll
		}
	}
	return d
}

// observe gathers every observation the engine takes, once.
func (r *Reconciler) observe(ctx context.Context, _ *statusPatcher, rc *reconcileContext) error {
	ro := rc.ro
	// An error here is the spec's; step reports it.
	rc.specRevision, _ = engine.DesiredRevision(&ro.Spec)
	// Errors before persist are plain: nothing was decided, so nothing is
	// reported in status, and the reconcile is retried.
	if err := r.listOwned(ctx, rc); err != nil {
		return err
	}
	if ro.Spec.Replicas != nil {
		stable, canary := readinessRevisions(&ro.Status, rc.specRevision)
		rc.obs.Workload = workload.Readiness(rc.replicaSets, stable, canary)
	}
	// The replicas router's acknowledgement is the workload's readiness:
	// no data plane is asked (or waited on in the background).
	if v := ro.Status.Traffic.PlanVersion; v != "" && !validation.ReplicasRouter(&ro.Spec) {
		dp, err := r.Acknowledger.Acknowledgement(ctx, ro, v)
		if err != nil {
			return fmt.Errorf("data-plane acknowledgement of plan %s: %w", v, err)
		}
		rc.obs.DataPlane = dp
	}
	rc.obs.Analysis = r.observeRuns(ctx, rc)
	switch c, err := commandOf(ro); {
	case err == nil:
		rc.obs.Commands = []engine.Command{c.engineCommand()}
	case !errors.Is(err, errNoCommand):
		r.warn(ctx, ro, "InvalidCommand", "ignoring the command annotation: %v", err)
	}
	rc.obs.Window = window.Evaluate(ro.Spec.Windows, rc.now)
	rc.obs.Git = provenance(ro)
	rc.obs.GitRevert = r.reverts.observation(types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}, &ro.Status)
	return nil
}

// readinessRevisions names the revisions the engine will treat as stable
// and canary after this step: the spec's revision is the canary whenever it
// differs from stable. Reporting the old canary's readiness while the spec
// already names a newer one would let the engine route to pods that do not
// exist yet.
func readinessRevisions(st *v1alpha1.RolloutStatus, spec string) (stable, canary string) {
	stable = st.StableRevision
	if stable == "" {
		stable = spec
	}
	if spec != stable {
		canary = spec
	}
	return stable, canary
}

// listOwned reads the Rollout's ReplicaSets and AnalysisRuns from the cache.
func (r *Reconciler) listOwned(ctx context.Context, rc *reconcileContext) error {
	ro := rc.ro
	var rss appsv1.ReplicaSetList
	if err := r.List(ctx, &rss, append(r.ownedBy(ro), client.HasLabels{workload.LabelRevision})...); err != nil {
		return fmt.Errorf("list ReplicaSets: %w", err)
	}
	rc.replicaSets = workload.Owned(ro, rss.Items)
	var runs v1alpha1.AnalysisRunList
	if err := r.List(ctx, &runs, r.ownedBy(ro)...); err != nil {
		return fmt.Errorf("list AnalysisRuns: %w", err)
	}
	rc.runs = map[string]*v1alpha1.AnalysisRun{}
	for i := range runs.Items {
		run := &runs.Items[i]
		if ref := metav1.GetControllerOf(run); ref != nil && ref.UID == ro.UID {
			rc.runs[run.Name] = run
		}
	}
	return nil
}

// provenance reads the Git provenance annotations gitsync writes on the
// Rollouts it applies; nil without a commit.
func provenance(ro *v1alpha1.Rollout) *v1alpha1.GitProvenance {
	a := ro.Annotations
	if a[gitsync.AnnotationCommit] == "" {
		return nil
	}
	g := &v1alpha1.GitProvenance{
		Repository: a[gitsync.AnnotationRepository],
		Commit:     a[gitsync.AnnotationCommit],
		Path:       a[gitsync.AnnotationPath],
	}
	if t, err := time.Parse(time.RFC3339, a[gitsync.AnnotationCommitTime]); err == nil {
		g.CommitTime = &metav1.Time{Time: t}
	}
	return g
}

// step runs the engine.
func (r *Reconciler) step(_ context.Context, _ *statusPatcher, rc *reconcileContext) error {
	out, err := engine.Step(engine.Input{Rollout: rc.ro, Observations: rc.obs, Now: rc.now})
	if err != nil {
		return stageErr(ReasonInvalidSpec, fmt.Errorf("engine: %w", err))
	}
	rc.out = out
	return nil
}

// persist writes the engine's status before anything acts on it, so a
// crash or a conflict never leaves an action that the status does not
// record.
func (r *Reconciler) persist(ctx context.Context, sp *statusPatcher, rc *reconcileContext) error {
	rc.ro.Status = *rc.out.Status.DeepCopy()
	rc.ro.Status.PendingNotifications = r.pendingNotifications(rc)
	countPods(rc)
	if r.GitSync != nil {
		rc.ro.Status.GitSync = r.GitSync.GitSync(ctx, rc.ro)
	}
	if sp.changed(rc.ro) {
		carryReconciled(rc)
	}
	if err := sp.patch(ctx, rc.ro); err != nil {
		// Not a stageError: nothing was recorded, so there is nothing to
		// report in status; the reconcile starts over from a fresh read.
		return err
	}
	rc.persisted = true
	return nil
}

// carryReconciled moves a Reconciled condition that is True (the last
// persisted status was carried out) to the generation being persisted, in
// the status patch that goes out anyway, so that summarize has nothing
// left to write when this reconcile succeeds too: the condition's
// generation used to cost a status patch of its own on every spec change.
// If a later stage fails, summarize turns it False with a patch of its
// own, as before. A False condition is left alone: only summarize, after
// the outputs were carried out, may say True again.
func carryReconciled(rc *reconcileContext) {
	c := meta.FindStatusCondition(rc.ro.Status.Conditions, ConditionReconciled)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonSucceeded {
		return
	}
	c.ObservedGeneration = rc.ro.Generation
}
