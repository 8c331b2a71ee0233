package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// A conflict, however wrapped or joined with other conflicts, becomes a
// quiet requeue; anything else beside it stays an error.
func TestQuietConflicts(t *testing.T) {
	t.Parallel()
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "sluice.dev", Resource: "rollouts"}, "reviews", errors.New("the object has been modified"))
	other := errors.New("connection refused")
	for _, tc := range []struct {
		name  string
		err   error
		quiet bool
	}{
		{"conflict", conflict, true},
		{"wrapped", fmt.Errorf("patch status of rollout a/b: %w", conflict), true},
		{"joined conflicts", errors.Join(fmt.Errorf("scale: %w", conflict), conflict), true},
		{"stage error", stageErr(ReasonScaleFailed, fmt.Errorf("scale: %w", conflict)), true},
		{"conflict and another error", errors.Join(conflict, other), false},
		{"wrapped join with another error", fmt.Errorf("stage: %w", errors.Join(other, conflict)), false},
		{"other", other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := QuietConflicts(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
				return reconcile.Result{}, tc.err
			}))
			res, err := r.Reconcile(context.Background(), reconcile.Request{})
			switch {
			case tc.quiet && (err != nil || !res.Requeue): //nolint:staticcheck // what QuietConflicts sets
				t.Errorf("result %+v, err %v: want a requeue and no error", res, err)
			case !tc.quiet && !errors.Is(err, tc.err):
				t.Errorf("err %v: want %v passed through", err, tc.err)
			}
		})
	}
}

type missingCRD struct{}

func (missingCRD) Error() string             { return "the CRDs are not installed" }
func (missingCRD) RetryAfter() time.Duration { return 15 * time.Second }

// A Waiting error, however wrapped, becomes a requeue after its delay.
func TestQuietConflictsWaits(t *testing.T) {
	t.Parallel()
	r := QuietConflicts(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
		return reconcile.Result{}, stageErr(ReasonPublishFailed, fmt.Errorf("publish plan 1: %w", missingCRD{}))
	}))
	res, err := r.Reconcile(context.Background(), reconcile.Request{})
	if err != nil || res.RequeueAfter != 15*time.Second {
		t.Errorf("result %+v, err %v: want a requeue after 15s and no error", res, err)
	}
}
