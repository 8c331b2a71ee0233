package analysis

import (
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// MetricSummaries is the Rollout status view of a run's metrics: per
// metric the phase, last value, count of each outcome and the reason of the
// last non-success.
func MetricSummaries(st *v1alpha1.AnalysisRunState) []v1alpha1.MetricSummary {
	if len(st.Metrics) == 0 {
		return nil
	}
	out := make([]v1alpha1.MetricSummary, len(st.Metrics))
	for i, r := range st.Metrics {
		out[i] = v1alpha1.MetricSummary{
			Name:         r.Name,
			Phase:        r.Phase,
			LastValue:    r.LastValue,
			Successful:   r.Successful,
			Failed:       r.Failed,
			Inconclusive: r.Inconclusive,
			Error:        r.Error,
			Message:      r.Message,
		}
	}
	return out
}

// Observation is what the engine is told about a run
// (engine.Observations.Analysis). A run not stepped yet reports Running:
// the engine lists a run as Running from the moment it asks for it.
func Observation(run *v1alpha1.AnalysisRun) engine.AnalysisObservation {
	phase := run.Status.Phase
	if phase == "" {
		phase = v1alpha1.AnalysisRunning
	}
	return engine.AnalysisObservation{
		Name:    run.Name,
		Phase:   phase,
		Message: run.Status.Message,
		Metrics: MetricSummaries(&run.Status),
	}
}

// ErrorObservation is what to tell the engine about a run that could not
// be created (NewRun failed: a template missing, an argument without a
// value): phase Error, which the engine treats like Failed, with the reason.
func ErrorObservation(name string, err error) engine.AnalysisObservation {
	return engine.AnalysisObservation{Name: name, Phase: v1alpha1.AnalysisError, Message: "cannot run: " + err.Error()}
}
