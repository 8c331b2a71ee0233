package analysis

import (
	"fmt"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// RenderedQuery is one query a run sends its provider, rendered.
type RenderedQuery struct {
	// Template and Metric name where the query comes from; Index is the
	// metric's position in the template's spec.metrics.
	Template string
	Metric   string
	Index    int
	// Side is "stable" or "canary" for the two queries of a compare
	// metric (a range query each), "" for a threshold metric's instant
	// query.
	Side string
	Text string
}

// QueryError is a metric of a run that could not be prepared: a query
// that cannot be rendered (errors.As finds an *ArgError when an
// argument's value is at fault) or a setting the run would refuse.
type QueryError struct {
	Template string
	Metric   string
	Index    int
	Err      error
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("template %q, metric %q: %v", e.Template, e.Metric, e.Err)
}

func (e *QueryError) Unwrap() error { return e.Err }

// RunQueries prepares the metrics of a run of templates with args the way
// NewRun does (the same argument resolution, the same rendering), without
// creating the run, and returns every query it would send. It is for
// checks ahead of a rollout (sluice validate): an error is about the run
// as a whole (an argument missing, metrics of one name in two templates),
// a QueryError about one metric; the queries of the other metrics are
// returned all the same.
func RunQueries(templates []*v1alpha1.AnalysisTemplate, args []v1alpha1.Argument) ([]RenderedQuery, []*QueryError, error) {
	values, err := resolveArgs(templates, args)
	if err != nil {
		return nil, nil, err
	}
	from := map[string]string{}
	for _, t := range templates {
		for _, m := range t.Spec.Metrics {
			if prev, dup := from[m.Name]; dup {
				return nil, nil, fmt.Errorf("metric %q is defined by both template %q and template %q; metric names must be unique within a run", m.Name, prev, t.Name)
			}
			from[m.Name] = t.Name
		}
	}
	var (
		out  []RenderedQuery
		errs []*QueryError
	)
	for _, t := range templates {
		for i := range t.Spec.Metrics {
			s := &t.Spec.Metrics[i]
			m, err := compileMetric(s, values)
			if err != nil {
				errs = append(errs, &QueryError{Template: t.Name, Metric: s.Name, Index: i, Err: err})
				continue
			}
			q := RenderedQuery{Template: t.Name, Metric: s.Name, Index: i}
			if m.compare == nil {
				q.Text = m.query
				out = append(out, q)
				continue
			}
			stable, canary := q, q
			stable.Side, stable.Text = "stable", m.compare.stable
			canary.Side, canary.Text = "canary", m.compare.canary
			out = append(out, stable, canary)
		}
	}
	return out, errs, nil
}
