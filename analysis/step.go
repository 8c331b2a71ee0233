package analysis

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Input is everything one Step looks at.
type Input struct {
	// Run is read, never modified: its spec and its last recorded status.
	Run *v1alpha1.AnalysisRun
	// Results of the Queries of earlier Steps. A result whose index is not
	// the metric's next one (a duplicate, or a replay after a restart) is
	// ignored, so feeding the same result twice records it once.
	Results []Result
	// Now is the time of this step; Step never reads a clock.
	Now time.Time
}

// Output is everything one Step decided.
type Output struct {
	// Status is the run's new status; persist it before acting on the rest.
	Status v1alpha1.AnalysisRunState
	// Queries are the measurements due at Now, at most one per metric (the
	// metric's next). Take them and call Step again with their Results;
	// a metric that fell behind gets its next query from that call.
	Queries []Query
	// RequeueAfter is when the next measurement not in Queries falls due;
	// zero when there is none or the run is complete.
	RequeueAfter time.Duration
}

// Query is one measurement for the caller to take.
type Query struct {
	// Metric and Index identify the measurement; the Result must carry
	// both.
	Metric string
	Index  int32
	// At is the time to evaluate the query for: its slot in the schedule,
	// StartedAt + initialDelay + Index × interval. A measurement taken late
	// (after a restart, say) still describes its own slot.
	At time.Time
	// Namespace of the run, where the provider's Secrets live.
	Namespace string
	// Provider is the metric's provider; its Query field is the template,
	// use Query or Compare instead.
	Provider *v1alpha1.PrometheusProvider
	// Timeout bounds the measurement.
	Timeout time.Duration
	// Query is the rendered query of a threshold metric.
	Query string
	// Compare is set for compare metrics instead of Query.
	Compare *CompareQuery
}

// CompareQuery asks for the samples of the rendered stable and canary
// queries over [At-Window, At], one every Step.
type CompareQuery struct {
	Stable, Canary string
	Window, Step   time.Duration
}

// Result is a taken measurement.
type Result struct {
	Metric string
	Index  int32
	// Value is what a threshold metric's query returned.
	Value Value
	// Stable and Canary are a compare metric's samples.
	Stable, Canary []float64
	// Err says why the measurement could not be taken (query failed,
	// timed out, an unusable result): the measurement is an Error.
	Err error
}

// Value is the result of an instant query.
type Value struct {
	// Scalar is true for a scalar result, whose value is Values[0]; false
	// for an instant vector, one value per series (none: no data).
	Scalar bool
	Values []float64
}

// Step advances a run: it starts it, records the results given, judges
// each metric against its limits and the run against its metrics, and says
// which measurements are due. It is deterministic: the same input gives the
// same output, so a run resumes from its persisted status exactly.
func Step(in Input) Output {
	st := *in.Run.Status.DeepCopy()
	if st.Phase.Completed() {
		return Output{Status: st}
	}
	now := in.Now
	metrics, err := compile(&in.Run.Spec)
	if err != nil {
		// Nothing can be measured: a configuration problem, not a verdict
		// on the revision.
		st.Phase = v1alpha1.AnalysisError
		st.Message = "cannot run: " + err.Error()
		st.CompletedAt = mtime(now)
		return Output{Status: st}
	}
	if st.StartedAt == nil {
		// Whole seconds: metav1.Time keeps no more, and the schedule must
		// be the same before and after the status is persisted. Rounded up,
		// so that no measurement describes a moment before the run began
		// (before the step's traffic was in place).
		start := now.Truncate(time.Second)
		if start.Before(now) {
			start = start.Add(time.Second)
		}
		st.StartedAt = mtime(start)
	}
	st.Phase = v1alpha1.AnalysisRunning
	s := &stepper{st: &st, metrics: metrics, now: now}
	s.syncResults()
	for _, r := range in.Results {
		s.record(r)
	}
	if in.Run.Spec.Terminate {
		s.terminate()
	}
	if phase, msg := s.decide(); phase != v1alpha1.AnalysisRunning {
		st.Phase, st.Message = phase, msg
		st.CompletedAt = mtime(now)
		return Output{Status: st}
	}
	out := Output{Status: st}
	out.Queries, out.RequeueAfter = s.schedule(in.Run.Namespace)
	return out
}

type stepper struct {
	st      *v1alpha1.AnalysisRunState
	metrics []metric
	now     time.Time
}

// syncResults makes st.Metrics follow spec.metrics, one entry each in
// order, keeping what was recorded.
func (s *stepper) syncResults() {
	old := map[string]v1alpha1.MetricResult{}
	for _, r := range s.st.Metrics {
		old[r.Name] = r
	}
	res := make([]v1alpha1.MetricResult, len(s.metrics))
	for i, m := range s.metrics {
		r, ok := old[m.spec.Name]
		if !ok {
			r = v1alpha1.MetricResult{Name: m.spec.Name, Phase: v1alpha1.AnalysisRunning}
		}
		res[i] = r
	}
	s.st.Metrics = res
}

func (s *stepper) find(name string) (*metric, *v1alpha1.MetricResult) {
	for i := range s.metrics {
		if s.metrics[i].spec.Name == name {
			return &s.metrics[i], &s.st.Metrics[i]
		}
	}
	return nil, nil
}

func taken(r *v1alpha1.MetricResult) int32 {
	return r.Successful + r.Failed + r.Inconclusive + r.Error
}

func judged(r *v1alpha1.MetricResult) int32 {
	return r.Successful + r.Failed + r.Inconclusive
}

// slot is when measurement k of m is due.
func (s *stepper) slot(m *metric, k int32) time.Time {
	return s.st.StartedAt.Add(max(m.delay, 0) + time.Duration(k)*m.interval)
}

func (s *stepper) record(res Result) {
	m, r := s.find(res.Metric)
	if m == nil || r.Phase.Completed() || res.Index != taken(r) {
		return
	}
	at := s.slot(m, res.Index)
	if at.After(s.now) {
		return // not due yet: cannot be a result of a query Step asked for
	}
	phase, value, msg := judge(m, res)
	meas := v1alpha1.Measurement{Index: res.Index, Phase: phase, At: metav1.NewTime(at), Value: value, Message: msg}
	switch phase {
	case v1alpha1.AnalysisSuccessful:
		r.Successful++
	case v1alpha1.AnalysisFailed:
		r.Failed++
	case v1alpha1.AnalysisInconclusive:
		r.Inconclusive++
	default:
		r.Error++
	}
	if phase == v1alpha1.AnalysisError {
		r.ConsecutiveErrors++
	} else {
		r.ConsecutiveErrors = 0
	}
	if value != "" {
		r.LastValue = value
	}
	if phase != v1alpha1.AnalysisSuccessful {
		r.Message = msg
		s.st.Message = fmt.Sprintf("%s: %s", m.spec.Name, msg)
	}
	r.Measurements = append(r.Measurements, meas)
	if n := len(r.Measurements); n > MaxHistory {
		r.Measurements = append([]v1alpha1.Measurement(nil), r.Measurements[n-MaxHistory:]...)
	}
	r.Phase, r.Message = metricPhase(m, r)
}

// metricPhase applies the limits. Errors do not count towards count: a
// metric with count 5 needs 5 judged measurements, and runs of Errors are
// bounded by consecutiveErrorLimit instead.
func metricPhase(m *metric, r *v1alpha1.MetricResult) (v1alpha1.AnalysisPhase, string) {
	last := r.Message
	switch {
	case r.ConsecutiveErrors > m.consecutiveErrorLimit:
		return v1alpha1.AnalysisError, fmt.Sprintf("%d errors in a row, more than consecutiveErrorLimit %d; last: %s", r.ConsecutiveErrors, m.consecutiveErrorLimit, last)
	case r.Failed > m.failureLimit:
		return v1alpha1.AnalysisFailed, fmt.Sprintf("%d failed measurements, more than failureLimit %d; last: %s", r.Failed, m.failureLimit, last)
	case r.Inconclusive > m.inconclusiveLimit:
		return v1alpha1.AnalysisInconclusive, fmt.Sprintf("%d inconclusive measurements, more than inconclusiveLimit %d; last: %s", r.Inconclusive, m.inconclusiveLimit, last)
	case m.count > 0 && judged(r) >= m.count:
		return completedPhase(r)
	}
	return v1alpha1.AnalysisRunning, last
}

// completedPhase is the phase of a metric that stopped within its limits:
// Successful only if at least one measurement was, since no data (or
// only tolerated failures) is never success.
func completedPhase(r *v1alpha1.MetricResult) (v1alpha1.AnalysisPhase, string) {
	if r.Successful == 0 {
		return v1alpha1.AnalysisInconclusive, fmt.Sprintf("none of %d measurements was successful; last: %s", taken(r), r.Message)
	}
	return v1alpha1.AnalysisSuccessful, r.Message
}

// terminate ends every running metric with what it has.
func (s *stepper) terminate() {
	for i := range s.st.Metrics {
		r := &s.st.Metrics[i]
		if r.Phase.Completed() {
			continue
		}
		r.Phase, r.Message = completedPhase(r)
		if r.Phase == v1alpha1.AnalysisSuccessful {
			r.Message = fmt.Sprintf("stopped after %d measurements", taken(r))
		}
	}
}

// decide gives the run's phase from its metrics. Metrics in dryRun never
// decide. Failed (or Error) decides at once. Inconclusive decides once no
// metric with a count is still measuring (one might still fail); metrics
// without a count never complete, so they are not waited for. Successful
// needs every metric complete.
func (s *stepper) decide() (v1alpha1.AnalysisPhase, string) {
	var decisive []int
	for i := range s.metrics {
		if !s.metrics[i].spec.DryRun {
			decisive = append(decisive, i)
		}
	}
	for _, i := range decisive {
		r := &s.st.Metrics[i]
		if r.Phase == v1alpha1.AnalysisFailed || r.Phase == v1alpha1.AnalysisError {
			return v1alpha1.AnalysisFailed, fmt.Sprintf("%s: %s", r.Name, r.Message)
		}
	}
	boundedRunning, running, inconclusive := false, false, -1
	for _, i := range decisive {
		switch s.st.Metrics[i].Phase {
		case v1alpha1.AnalysisRunning:
			running = true
			boundedRunning = boundedRunning || s.metrics[i].count > 0
		case v1alpha1.AnalysisInconclusive:
			if inconclusive < 0 {
				inconclusive = i
			}
		}
	}
	switch {
	case boundedRunning:
		return v1alpha1.AnalysisRunning, ""
	case inconclusive >= 0:
		r := &s.st.Metrics[inconclusive]
		return v1alpha1.AnalysisInconclusive, fmt.Sprintf("%s: %s", r.Name, r.Message)
	case running:
		return v1alpha1.AnalysisRunning, ""
	}
	if len(decisive) == 0 {
		// Only dry runs: complete when they are, so they get measured.
		for _, r := range s.st.Metrics {
			if !r.Phase.Completed() {
				return v1alpha1.AnalysisRunning, ""
			}
		}
	}
	return v1alpha1.AnalysisSuccessful, fmt.Sprintf("%d metric(s) successful", len(decisive))
}

// schedule lists the measurements due now and when the next one is.
func (s *stepper) schedule(namespace string) ([]Query, time.Duration) {
	var qs []Query
	var next time.Time
	for i := range s.metrics {
		m, r := &s.metrics[i], &s.st.Metrics[i]
		if r.Phase.Completed() {
			continue
		}
		k := taken(r)
		at := s.slot(m, k)
		if at.After(s.now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		q := Query{
			Metric: m.spec.Name, Index: k, At: at, Namespace: namespace,
			Provider: m.spec.Provider.Prometheus, Timeout: m.timeout, Query: m.query,
		}
		if c := m.compare; c != nil {
			q.Compare = &CompareQuery{Stable: c.stable, Canary: c.canary, Window: c.window, Step: c.step}
		}
		qs = append(qs, q)
	}
	if next.IsZero() {
		return qs, 0
	}
	return qs, next.Sub(s.now)
}

func mtime(t time.Time) *metav1.Time {
	m := metav1.NewTime(t)
	return &m
}
