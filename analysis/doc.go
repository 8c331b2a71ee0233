// Package analysis runs Sluice's analysis: templated PromQL measurements,
// judged by CEL conditions or by comparing canary with stable, that gate
// rollout steps and trigger automatic rollback. docs/analysis.md explains
// the behaviour; this comment the shape of the code.
//
// Like the rollout engine, the core is a deterministic state machine free
// of I/O and clocks. Step takes a run (its spec and last recorded status),
// the results of the measurements it asked for, and the time; it returns
// the new status, the measurements now due and when the next one falls
// due. The same input gives the same output, so a run persisted after any
// step resumes exactly there: the schedule is derived from the run's start
// and the number of measurements taken, never from wall-clock state.
//
// Around it:
//
//   - NewRun turns the engine's StartAnalysis action (templates and
//     arguments) into a v1alpha1.AnalysisRun: metrics copied, every
//     argument resolved, every query rendered and condition compiled.
//   - Render puts argument values into queries, escaped for where they
//     stand, so a value can never change a query's structure.
//   - Advance is the loop for adapters: Step, take the due measurements
//     with a Measurer (analysis/prometheus), Step again with the results.
//   - Observation maps a run to the engine's AnalysisObservation, whose
//     per-metric summaries show in the Rollout's status.
//
// Callers handle a Step's Output in this order: persist Output.Status,
// then take Output.Queries and call Step again with their Results, then
// wait Output.RequeueAfter.
//
// The package never imports controller-runtime; condition evaluation lives
// in analysis/condition, which depends on cel-go only.
package analysis
