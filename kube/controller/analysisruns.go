package controller

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The reconciler creates the AnalysisRun objects the engine asks for and
// reads their status; measuring is the analysis controller's job, which
// writes each run's status (phase, metrics) as it measures.

// observeRuns reports each run the status lists as running. A run whose
// object does not exist yet is built here from its AnalysisTemplates; if
// that fails (a template missing, an argument without a value) the engine
// is told the run is in Error with the reason, as it would be of a run that
// failed, instead of waiting for a run that can never start.
func (r *Reconciler) observeRuns(ctx context.Context, rc *reconcileContext) []engine.AnalysisObservation {
	var obs []engine.AnalysisObservation
	for _, st := range rc.ro.Status.Analysis {
		if st.Terminated || st.Phase.Completed() {
			continue
		}
		if run, ok := rc.runs[st.Name]; ok {
			obs = append(obs, analysis.Observation(run))
			continue
		}
		run, err := r.buildRun(ctx, rc.ro, st)
		if err != nil {
			obs = append(obs, analysis.ErrorObservation(st.Name, err))
			continue
		}
		rc.built[st.Name] = run
	}
	return obs
}

// buildRun makes the AnalysisRun object of a run in the status: metrics
// copied from the templates, arguments resolved, owned by the Rollout so
// it goes when the Rollout goes.
func (r *Reconciler) buildRun(ctx context.Context, ro *v1alpha1.Rollout, st v1alpha1.AnalysisRunStatus) (*v1alpha1.AnalysisRun, error) {
	templates := make([]*v1alpha1.AnalysisTemplate, 0, len(st.Templates))
	for _, ref := range st.Templates {
		t := &v1alpha1.AnalysisTemplate{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: ref.Name}, t); err != nil {
			return nil, fmt.Errorf("AnalysisTemplate %s/%s: %w", ro.Namespace, ref.Name, err)
		}
		templates = append(templates, t)
	}
	run, err := analysis.NewRun(st.Name, ro.Namespace, templates, st.Args)
	if err != nil {
		return nil, fmt.Errorf("analysis run %s: %w", st.Name, err)
	}
	run.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ro, workload.RolloutKind)}
	return run, nil
}

// ensureRuns creates every run the persisted status lists as running that
// does not exist: new runs of this step, and runs lost to a crash between
// persisting a start and creating it. Creating is idempotent by name.
func (r *Reconciler) ensureRuns(ctx context.Context, rc *reconcileContext) error {
	var errs []error
	for _, st := range rc.out.Status.Analysis {
		if st.Terminated || st.Phase.Completed() || rc.runs[st.Name] != nil {
			continue
		}
		run := rc.built[st.Name]
		if run == nil {
			var err error
			if run, err = r.buildRun(ctx, rc.ro, st); err != nil {
				// The next reconcile's observe reports it to the engine.
				errs = append(errs, err)
				continue
			}
		}
		if err := r.createOwned(ctx, run); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("create AnalysisRun %s: %w", run.Name, err))
		}
	}
	return errors.Join(errs...)
}

// stopRun asks the analysis controller to stop measuring: the run keeps
// what it measured and completes.
func (r *Reconciler) stopRun(ctx context.Context, rc *reconcileContext, name string) error {
	run := rc.runs[name]
	if run == nil || run.Spec.Terminate {
		return nil
	}
	patched := run.DeepCopy()
	patched.Spec.Terminate = true
	if err := r.patchOwnedSpec(ctx, patched, run); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("terminate AnalysisRun %s: %w", name, err)
	}
	return nil
}

// collectRuns deletes the Rollout's runs that its status no longer lists.
// The status lists the runs of the current (or last) rollout; older runs
// are history that the status summarises no more, and keeping them would
// let objects grow with every rollout.
func (r *Reconciler) collectRuns(ctx context.Context, rc *reconcileContext) error {
	listed := map[string]bool{}
	for _, st := range rc.out.Status.Analysis {
		listed[st.Name] = true
	}
	var errs []error
	for name, run := range rc.runs {
		if listed[name] {
			continue
		}
		err := r.Delete(ctx, run, client.Preconditions{UID: &run.UID})
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete AnalysisRun %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
