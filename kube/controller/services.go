package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// ensureServices gives every revision the engine wants running a headless
// Service (workload.Service), whose EndpointSlices are where the xDS
// server finds that revision's pods. Part of the scale stage: a revision
// gets its Service once its ReplicaSet exists, which owns the Service, so
// deleting a revision's ReplicaSet deletes its Service too. created are the
// ReplicaSets this reconcile created (they are not in rc.replicaSets); one
// whose create failed has no UID and gets its Service on a later pass.
//
// These Services never take spec.service.name, which is the user's: with
// the replicas router (no router) clients reach both revisions through
// that Service, whose selector is on the template's labels; every
// revision's pods keep those and only add the revision label, so it
// selects both, and Sluice neither writes nor needs it.
func (r *Reconciler) ensureServices(ctx context.Context, rc *reconcileContext, created []*appsv1.ReplicaSet) error {
	owners := maps.Clone(rc.replicaSets)
	for _, rs := range created {
		if rs.UID != "" {
			owners[rs.Labels[workload.LabelRevision]] = rs
		}
	}
	var errs []error
	for _, s := range rc.out.Scale {
		// A revision without a ReplicaSet is reported by scale; its
		// Service follows once the ReplicaSet exists.
		if rs := owners[s.Revision]; rs != nil {
			errs = append(errs, r.ensureService(ctx, rc.ro, rs))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) ensureService(ctx context.Context, ro *v1alpha1.Rollout, rs *appsv1.ReplicaSet) error {
	want, err := workload.Service(ro, rs)
	if err != nil {
		return fmt.Errorf("service of ReplicaSet %s: %w", rs.Name, err)
	}
	got := &corev1.Service{}
	err = r.Get(ctx, client.ObjectKeyFromObject(want), got)
	switch {
	case apierrors.IsNotFound(err):
		return r.createService(ctx, want, rs)
	case err != nil:
		return fmt.Errorf("get Service %s: %w", want.Name, err)
	}
	adopt := false
	if err := controlledBy(got, rs); err != nil {
		if !leftByEarlierIncarnation(got, rs) {
			return err
		}
		adopt = true
	}
	if !adopt && serviceUpToDate(got, want) {
		return nil
	}
	// Only the fields Sluice decides are written; the API server's
	// defaults (IP families, session affinity) and others' labels stay.
	base := got.DeepCopy()
	if got.Labels == nil {
		got.Labels = map[string]string{}
	}
	maps.Copy(got.Labels, want.Labels)
	got.Spec.Selector = want.Spec.Selector
	got.Spec.Ports = want.Spec.Ports
	patch := client.MergeFrom(base)
	if adopt {
		// Conditional: if the garbage collector got to it first, the
		// write fails and the next reconcile creates the Service anew.
		got.OwnerReferences = append(slices.DeleteFunc(got.OwnerReferences, func(o metav1.OwnerReference) bool {
			return o.Controller != nil && *o.Controller
		}), want.OwnerReferences...)
		patch = client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	}
	if err := r.Patch(ctx, got, patch); err != nil {
		return fmt.Errorf("update Service %s: %w", want.Name, err)
	}
	return nil
}

// leftByEarlierIncarnation reports whether svc is a Service Sluice made
// for an earlier ReplicaSet of rs's name (and so of its revision), which
// was deleted: an extra revision stopped by an abort and run again by the
// retry, or a revision beyond the history bound that a revert brings
// back. The garbage collector deletes such a Service in time; until then
// the new ReplicaSet adopts it rather than waiting.
func leftByEarlierIncarnation(svc *corev1.Service, rs *appsv1.ReplicaSet) bool {
	ref := metav1.GetControllerOf(svc)
	return ref != nil && ref.Kind == "ReplicaSet" && ref.Name == rs.Name && ref.UID != rs.UID &&
		svc.Labels[workload.LabelManagedBy] == workload.ManagedBy && svc.DeletionTimestamp.IsZero()
}

func (r *Reconciler) createService(ctx context.Context, svc *corev1.Service, rs *appsv1.ReplicaSet) error {
	err := r.Create(ctx, svc)
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create Service %s: %w", svc.Name, err)
		}
		return nil
	}
	// As for ReplicaSets: usually our own create, which the cache had not
	// seen; otherwise someone else's Service holds the name (invisible to
	// a cache narrowed by CacheByObject), and every retry says so.
	var got corev1.Service
	if err := r.Get(ctx, client.ObjectKeyFromObject(svc), &got); err != nil {
		return fmt.Errorf("Service %s exists but cannot be read as Sluice's: %w", svc.Name, err)
	}
	return controlledBy(&got, rs)
}

// controlledBy refuses a Service that is not the ReplicaSet's: Sluice
// never takes over an object it did not make.
func controlledBy(svc *corev1.Service, rs *appsv1.ReplicaSet) error {
	if ref := metav1.GetControllerOf(svc); ref == nil || ref.UID != rs.UID {
		return fmt.Errorf("Service %s exists and is not controlled by ReplicaSet %s", svc.Name, rs.Name)
	}
	return nil
}

// serviceUpToDate reports whether got already has what want decides.
func serviceUpToDate(got, want *corev1.Service) bool {
	for k, v := range want.Labels {
		if got.Labels[k] != v {
			return false
		}
	}
	if !maps.Equal(got.Spec.Selector, want.Spec.Selector) || len(got.Spec.Ports) != len(want.Spec.Ports) {
		return false
	}
	for i, p := range want.Spec.Ports {
		g := got.Spec.Ports[i]
		if g.Name != p.Name || g.Protocol != p.Protocol || g.Port != p.Port || g.TargetPort != p.TargetPort {
			return false
		}
	}
	return true
}
