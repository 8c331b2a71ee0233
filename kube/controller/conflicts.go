package controller

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Waiting is an error that the controller cannot fix by trying again at
// once: something outside Sluice is missing (a CRD not installed). A
// reconcile that fails with one reports it as ever, in the Reconciled
// condition, and is looked at again after RetryAfter instead of with
// controller-runtime's backoff; it is logged at debug level only, since
// the part that found it out logs it once (kube/istio.Writer).
type Waiting interface {
	error
	RetryAfter() time.Duration
}

// QuietConflicts hands a reconcile that failed only because an object
// changed since it was read (409 Conflict: a command annotation, a Git
// apply, the ReplicaSet controller's status write) back to controller-runtime
// as a rate-limited requeue, logged at debug level, instead of as an
// error, which it would log as "Reconciler error" at error level. Nothing
// was lost: the reconcile starts over from a fresh read, as it would
// after an error; optimistic concurrency is routine, not a fault. Other
// errors pass through unchanged, except a Waiting one, which becomes a
// requeue after its RetryAfter.
func QuietConflicts(r reconcile.Reconciler) reconcile.Reconciler {
	return quietConflicts{r}
}

type quietConflicts struct{ reconcile.Reconciler }

func (q quietConflicts) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := q.Reconciler.Reconcile(ctx, req)
	var w Waiting
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &w):
		log.FromContext(ctx).V(1).Info("waiting for something outside Sluice", "retryAfter", w.RetryAfter(), "reason", err.Error())
		return reconcile.Result{RequeueAfter: w.RetryAfter()}, nil
	case !onlyConflicts(err):
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
