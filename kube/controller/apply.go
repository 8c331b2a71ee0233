package controller

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/validation"
)

// publish puts the persisted plan in force. It runs on every reconcile,
// not only when the plan changed: a plan lost to a crash between persist
// and publish goes out on the next reconcile. An unchanged plan is cheap
// for the xDS plane (its version is its hash), but the Istio writer reads
// and applies its objects again (docs/performance.md, "Found and left").
func (r *Reconciler) publish(ctx context.Context, _ *statusPatcher, rc *reconcileContext) error {
	if validation.ReplicasRouter(&rc.ro.Spec) {
		// No router: the ReplicaSets are the data plane (scale), and no
		// routing object is written; xDS clients get the plan from
		// status (the Feeder).
		return nil
	}
	if err := r.Publisher.Publish(ctx, rc.ro, rc.out.Plan); err != nil {
		return stageErr(ReasonPublishFailed, fmt.Errorf("publish plan %s: %w", rc.out.Plan.Version, err))
	}
	return nil
}

// scale makes the ReplicaSets match the engine's scale: creates the spec
// revision's ReplicaSet and those of extra revisions, resizes the others
// (unlisted revisions to zero) and deletes idle ones beyond the history
// bound and extra revisions no longer wanted.
func (r *Reconciler) scale(ctx context.Context, _ *statusPatcher, rc *reconcileContext) error {
	ro := rc.ro
	ch := workload.Plan(ro, rc.replicaSets, rc.out.Scale, rc.specRevision, r.history())
	var errs []error
	for _, rs := range ch.Create {
		errs = append(errs, r.createReplicaSet(ctx, rc, rs))
	}
	errs = append(errs, r.ensureServices(ctx, rc, ch.Create))
	for _, rs := range ch.Scale {
		errs = append(errs, r.resize(ctx, rs.ReplicaSet, rs.Replicas))
	}
	for _, rev := range ch.Missing {
		r.warn(ctx, ro, "ReplicaSetMissing",
			"ReplicaSet %s of revision %s is gone and cannot be recreated: its template is no longer in the spec",
			workload.Name(ro.Name, rev), rev)
	}
	for _, err := range ch.Unbuildable {
		r.warn(ctx, ro, "ExtraRevisionUnbuildable", "%v", err)
	}
	for _, rs := range ch.Delete {
		err := r.Delete(ctx, rs, client.PropagationPolicy(metav1.DeletePropagationBackground),
			client.Preconditions{UID: &rs.UID})
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete ReplicaSet %s: %w", rs.Name, err))
		}
	}
	return stageErr(ReasonScaleFailed, errors.Join(errs...))
}

func (r *Reconciler) createReplicaSet(ctx context.Context, rc *reconcileContext, rs *appsv1.ReplicaSet) error {
	err := r.createOwned(ctx, rs)
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create ReplicaSet %s: %w", rs.Name, err)
		}
		return nil
	}
	// Usually the cache has not seen our own create yet, and the Get
	// finds it. Otherwise (not in the cache yet, or controlled by someone
	// else) report it: the retry either sees ours or keeps saying why the
	// canary cannot start.
	var got appsv1.ReplicaSet
	if err := r.Get(ctx, client.ObjectKeyFromObject(rs), &got); err != nil {
		return fmt.Errorf("ReplicaSet %s exists but cannot be read: %w", rs.Name, err)
	}
	if ref := metav1.GetControllerOf(&got); ref == nil || ref.UID != rc.ro.UID {
		return fmt.Errorf("ReplicaSet %s exists and is not controlled by rollout %s", rs.Name, rc.ro.Name)
	}
	return nil
}

func (r *Reconciler) resize(ctx context.Context, rs *appsv1.ReplicaSet, n int32) error {
	base := rs.DeepCopy()
	rs = rs.DeepCopy()
	rs.Spec.Replicas = &n
	if err := r.patchOwnedSpec(ctx, rs, base); err != nil {
		return fmt.Errorf("scale ReplicaSet %s to %d: %w", rs.Name, n, err)
	}
	return nil
}

// act performs the engine's actions: stop runs, then make every run the
// status lists as running exist (which starts new runs and recreates lost
// ones after a restart: level, not edge), then Git write-back, then delete
// runs the status no longer lists.
func (r *Reconciler) act(ctx context.Context, _ *statusPatcher, rc *reconcileContext) error {
	var errs []error
	for _, a := range rc.out.Actions {
		if a.Kind == engine.ActionStopAnalysis {
			errs = append(errs, r.stopRun(ctx, rc, a.Run.Name))
		}
	}
	errs = append(errs, r.ensureRuns(ctx, rc))
	for _, a := range rc.out.Actions {
		if a.Kind == engine.ActionGitRevert {
			r.revert(ctx, rc, *a.Revert)
		}
	}
	errs = append(errs, r.collectRuns(ctx, rc))
	return stageErr(ReasonActionFailed, errors.Join(errs...))
}
