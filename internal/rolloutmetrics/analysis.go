package rolloutmetrics

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/analysis/condition"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Conditions, the condition label of sluice_analysis_metric_threshold.
const (
	ConditionSuccess = "success"
	ConditionFailure = "failure"
)

// Analysis are the series of the analysis metrics of every Rollout: the
// value of each metric's latest measurement and the thresholds its
// conditions compare it with, labelled namespace, rollout and metric (the
// template's metric name). No label names the run: a run name is new with
// every rollout and retry, and a series per run would grow without bound.
//
// A series shows the most recent measurement of that metric among the
// Rollout's runs (a background and a step run measuring one metric name
// share it); it stays after its run completes, so that the measurement
// that decided a run is scraped however short the run, and goes when that
// run is deleted (Drop: the Rollout's next rollout collected it) or the
// Rollout is (Forget).
//
// Both modes feed it from a run's persisted state (Observe): the
// controller's AnalysisRun reconciler and `sluice run`'s runner.
type Analysis struct {
	// Value is the value of the metric's latest measurement.
	Value *prometheus.GaugeVec
	// Threshold is the number its success or failure condition compares
	// the value with, where the condition has exactly one
	// (condition.Threshold).
	Threshold *prometheus.GaugeVec
	// Measurements counts the measurements recorded in runs' status, by
	// namespace, metric and outcome (CountMeasurements).
	Measurements *prometheus.CounterVec
	// MeasurementDuration is the time of one measurement, by result
	// (ObserveMeasurement).
	MeasurementDuration *prometheus.HistogramVec

	mu sync.Mutex
	// rollouts holds what is known of each Rollout's runs, so that
	// dropping a run or a Rollout costs the Rollout's runs only.
	rollouts map[rolloutKey]*rolloutRuns
}

// rolloutKey is a Rollout's namespace and name, as labels.
type rolloutKey struct{ ns, name string }

type rolloutRuns struct {
	// shown is the run and time of the measurement each value shows, by
	// metric label.
	shown map[string]shownBy
	// thresholds caches what each run's conditions compare with, by run
	// and metric name; a run's metrics never change.
	thresholds map[string]map[string]thresholds
}

type shownBy struct {
	run string
	at  time.Time
}

// thresholds of one metric; nil: the condition has none.
type thresholds struct {
	success, failure *float64
}

// NewAnalysis builds the analysis series, registered nowhere yet.
func NewAnalysis() *Analysis {
	labels := []string{"namespace", "rollout", "metric"}
	return &Analysis{
		Value: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_analysis_metric_value",
			Help: "Value of the latest measurement of an analysis metric of the Rollout: the query's scalar, or its first series (result[0]); a compare metric's canary median. Kept after the run completes, until the run is deleted.",
		}, labels),
		Threshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_analysis_metric_threshold",
			Help: "The number the metric's successCondition or failureCondition (condition) compares the result with, where it has exactly one comparison with a number; present while sluice_analysis_metric_value is.",
		}, append(labels, "condition")),
		Measurements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_analysis_measurements_total",
			Help: "Measurements recorded in analysis run status, by namespace, metric (the template's metric name) and outcome (Successful, Failed, Inconclusive, Error).",
		}, []string{"namespace", "metric", "outcome"}),
		MeasurementDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_analysis_measurement_duration_seconds",
			Help:    "Time of one measurement (all its queries), by result (ok: an answer, error: the measurement could not be taken).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"result"}),
		rollouts: map[rolloutKey]*rolloutRuns{},
	}
}

// Register adds the series to reg.
func (a *Analysis) Register(reg prometheus.Registerer) error {
	for _, r := range []string{measurementOK, measurementError} {
		a.MeasurementDuration.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{a.Value, a.Threshold, a.Measurements, a.MeasurementDuration} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register analysis metrics: %w", err)
		}
	}
	return nil
}

// Observe sets the series of run, a run of Rollout ns/rollout, from its
// persisted state. A metric whose latest measurement is older than the one
// its series shows (another run measured it since) is left alone, so the
// order in which runs are observed does not matter.
func (a *Analysis) Observe(ns, rollout string, run *v1alpha1.AnalysisRun) {
	key := rolloutKey{Label(ns), Label(rollout)}
	a.mu.Lock()
	defer a.mu.Unlock()
	rr := a.rollouts[key]
	if rr == nil {
		rr = &rolloutRuns{shown: map[string]shownBy{}, thresholds: map[string]map[string]thresholds{}}
		a.rollouts[key] = rr
	}
	th, ok := rr.thresholds[run.Name]
	if !ok {
		th = runThresholds(&run.Spec)
		rr.thresholds[run.Name] = th
	}
	for i := range run.Status.Metrics {
		r := &run.Status.Metrics[i]
		v, at, ok := latestValue(r)
		if !ok {
			continue
		}
		metric := Label(r.Name)
		if s, seen := rr.shown[metric]; seen && s.run != run.Name && at.Before(s.at) {
			continue
		}
		rr.shown[metric] = shownBy{run: run.Name, at: at}
		a.Value.WithLabelValues(key.ns, key.name, metric).Set(v)
		t := th[r.Name]
		for _, c := range []struct {
			name string
			v    *float64
		}{{ConditionSuccess, t.success}, {ConditionFailure, t.failure}} {
			if c.v == nil {
				a.Threshold.DeleteLabelValues(key.ns, key.name, metric, c.name)
				continue
			}
			a.Threshold.WithLabelValues(key.ns, key.name, metric, c.name).Set(*c.v)
		}
	}
}

// Results of a measurement, the result label of
// sluice_analysis_measurement_duration_seconds.
const (
	measurementOK    = "ok"
	measurementError = "error"
)

// ObserveMeasurement records the time of one measurement; err is its
// Result.Err.
func (a *Analysis) ObserveMeasurement(d time.Duration, err error) {
	result := measurementOK
	if err != nil {
		result = measurementError
	}
	a.MeasurementDuration.WithLabelValues(result).Observe(d.Seconds())
}

// CountMeasurements adds the measurements a run of namespace ns recorded
// between two persisted states of it (prev empty: since it began). The
// counters of a status count every measurement (its list keeps only the
// last few), so their differences are exact however many were taken at
// once.
func (a *Analysis) CountMeasurements(ns string, prev, cur *v1alpha1.AnalysisRunState) {
	before := map[string]*v1alpha1.MetricResult{}
	for i := range prev.Metrics {
		before[prev.Metrics[i].Name] = &prev.Metrics[i]
	}
	for _, m := range cur.Metrics {
		var old v1alpha1.MetricResult
		if b := before[m.Name]; b != nil {
			old = *b
		}
		for _, c := range []struct {
			outcome  v1alpha1.AnalysisPhase
			now, was int32
		}{
			{v1alpha1.AnalysisSuccessful, m.Successful, old.Successful},
			{v1alpha1.AnalysisFailed, m.Failed, old.Failed},
			{v1alpha1.AnalysisInconclusive, m.Inconclusive, old.Inconclusive},
			{v1alpha1.AnalysisError, m.Error, old.Error},
		} {
			if d := c.now - c.was; d > 0 {
				a.Measurements.WithLabelValues(Label(ns), Label(m.Name), string(c.outcome)).Add(float64(d))
			}
		}
	}
}

// Drop removes the series that show a measurement of the run, which was
// deleted.
func (a *Analysis) Drop(ns, rollout, run string) {
	key := rolloutKey{Label(ns), Label(rollout)}
	a.mu.Lock()
	defer a.mu.Unlock()
	rr := a.rollouts[key]
	if rr == nil {
		return
	}
	delete(rr.thresholds, run)
	for metric, s := range rr.shown {
		if s.run == run {
			a.remove(key, rr, metric)
		}
	}
	if len(rr.thresholds) == 0 && len(rr.shown) == 0 {
		delete(a.rollouts, key)
	}
}

// Forget removes every series of a deleted Rollout.
func (a *Analysis) Forget(ns, rollout string) {
	key := rolloutKey{Label(ns), Label(rollout)}
	a.mu.Lock()
	defer a.mu.Unlock()
	rr := a.rollouts[key]
	if rr == nil {
		return
	}
	for metric := range rr.shown {
		a.remove(key, rr, metric)
	}
	delete(a.rollouts, key)
}

// Runs lists the runs of a Rollout whose series are shown or whose
// thresholds are known, for a caller that drops those it no longer has.
func (a *Analysis) Runs(ns, rollout string) []string {
	key := rolloutKey{Label(ns), Label(rollout)}
	a.mu.Lock()
	defer a.mu.Unlock()
	rr := a.rollouts[key]
	if rr == nil {
		return nil
	}
	out := make([]string, 0, len(rr.thresholds))
	for run := range rr.thresholds {
		out = append(out, run)
	}
	return out
}

func (a *Analysis) remove(key rolloutKey, rr *rolloutRuns, metric string) {
	delete(rr.shown, metric)
	a.Value.DeleteLabelValues(key.ns, key.name, metric)
	a.Threshold.DeleteLabelValues(key.ns, key.name, metric, ConditionSuccess)
	a.Threshold.DeleteLabelValues(key.ns, key.name, metric, ConditionFailure)
}

func runThresholds(spec *v1alpha1.AnalysisRunSpec) map[string]thresholds {
	out := make(map[string]thresholds, len(spec.Metrics))
	for _, m := range spec.Metrics {
		var t thresholds
		if m.Compare == nil {
			t.success = threshold(m.SuccessCondition)
			t.failure = threshold(m.FailureCondition)
		}
		out[m.Name] = t
	}
	return out
}

func threshold(expr string) *float64 {
	if expr == "" {
		return nil
	}
	if v, ok := condition.Threshold(expr); ok {
		return &v
	}
	return nil
}

// latestValue is the value of the metric's latest measurement that has
// one, and the time it was taken for. Measurements without a number (an
// error, a query that returned no series) leave the previous value shown:
// sluice_analysis_measurements_total and the run's status tell them.
func latestValue(r *v1alpha1.MetricResult) (float64, time.Time, bool) {
	for i := len(r.Measurements) - 1; i >= 0; i-- {
		m := &r.Measurements[i]
		if v, ok := ParseValue(m.Value); ok {
			return v, m.At.Time, true
		}
	}
	return 0, time.Time{}, false
}

// ParseValue reads the number a measurement's text value stands for, as
// the analysis package writes it: a scalar ("0.99"), a vector's first
// value ("[0.99, 0.98]"), or a compare metric's canary median ("canary
// 0.12 vs stable 0.1 (medians of 10 and 10 samples), p=0.3"). An empty
// vector, or anything else, has none.
func ParseValue(s string) (float64, bool) {
	switch {
	case strings.HasPrefix(s, "["):
		s = strings.TrimPrefix(s, "[")
		if i := strings.IndexAny(s, ",]"); i >= 0 {
			s = s[:i]
		}
	case strings.HasPrefix(s, "canary "):
		s = strings.TrimPrefix(s, "canary ")
		if i := strings.IndexByte(s, ' '); i >= 0 {
			s = s[:i]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, false
	}
	return v, true
}
