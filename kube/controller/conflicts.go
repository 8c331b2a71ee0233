package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// QuietConflicts hands a reconcile that failed only because an object
// changed since it was read (409 Conflict: a command annotation, a Git
// apply, the ReplicaSet controller's status write) back to controller-runtime
// as a rate-limited requeue, logged at debug level, instead of as an
// error, which it would log as "Reconciler error" at error level. Nothing
// was lost: the reconcile starts over from a fresh read, as it would
// after an error; optimistic concurrency is routine, not a fault. Other
// errors pass through unchanged.
func QuietConflicts(r reconcile.Reconciler) reconcile.Reconciler {
	return quietConflicts{r}
}

type quietConflicts struct{ reconcile.Reconciler }

func (q quietConflicts) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := q.Reconciler.Reconcile(ctx, req)
	if err == nil || !onlyConflicts(err) {
		return res, err
	}
	log.FromContext(ctx).V(1).Info("an object changed since it was read; reconciling again from a fresh read", "conflict", err.Error())
	// A rate-limited requeue, as an error would get: the cache that
	// served the stale read needs a moment to catch up.
	return reconcile.Result{Requeue: true}, nil //nolint:staticcheck // RequeueAfter would skip the rate limiter
}

// onlyConflicts reports whether every error err joins or wraps, down to
// the leaves, is a 409 Conflict.
func onlyConflicts(err error) bool {
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, x := range errs {
			if x != nil && !onlyConflicts(x) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		if inner := e.Unwrap(); inner != nil {
			return onlyConflicts(inner)
		}
	}
	return apierrors.IsConflict(err)
}
