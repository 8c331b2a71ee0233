package manifest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// CheckQueries renders every PromQL query that the analyses of each
// Rollout would send (with the Rollout's arguments, the templates'
// defaults and representative values for what only the rollout knows,
// such as revisions), by the code the analysis runs use, and parses it
// with Prometheus's parser. A query that does not parse, an argument value
// that cannot stand where its placeholder is, or an analysis that could
// not start is a problem. Only templates among the files are checked.
func CheckQueries() Option { return func(o *options) { o.checkQueries = true } }

// Representative values of the arguments known only during a rollout:
// none is a single PromQL token, so a placeholder of one of them outside
// quotes is caught, as it would be by some revision at run time.
const (
	sampleStableRevision = "0a1b2c3d4e"
	sampleCanaryRevision = "9f8e7d6c5b"
	sampleNamespace      = "the-namespace"
)

// queryInput is a Rollout or AnalysisTemplate kept for CheckQueries.
type queryInput struct {
	obj Object
	v   *value
	// clean: the object had no problem of its own; one that had is not
	// checked further, so a mistake is not reported twice.
	clean bool
}

func (l *loader) collectForQueries(o Object, v *value, clean bool) {
	if l.o.checkQueries && (o.Rollout != nil || o.AnalysisTemplate != nil) {
		l.queryInputs = append(l.queryInputs, queryInput{obj: o, v: v, clean: clean})
	}
}

func nsOr(ns, fallback string) string {
	if ns == "" {
		return fallback
	}
	return ns
}

func (l *loader) checkQueries() {
	templates := map[string]queryInput{}
	for _, in := range l.queryInputs {
		if t := in.obj.AnalysisTemplate; t != nil {
			key := nsOr(t.Namespace, l.o.namespace) + "/" + t.Name
			if _, dup := templates[key]; !dup {
				templates[key] = in
			}
		}
	}
	seen := map[string]bool{}
	report := func(file string, line int, fieldPath, reason string) {
		key := fmt.Sprintf("%s:%d:%s:%s", file, line, fieldPath, reason)
		if !seen[key] {
			seen[key] = true
			l.problem(file, line, fieldPath, reason)
		}
	}
	for _, in := range l.queryInputs {
		ro := in.obj.Rollout
		if ro == nil || !in.clean {
			continue
		}
		ns := nsOr(ro.Namespace, l.o.namespace)
		for _, st := range analysisSteps(&ro.Spec) {
			var ts []queryInput
			for _, ref := range st.step.Templates {
				t, ok := templates[ns+"/"+ref.Name]
				if !ok || !t.clean {
					ts = nil // missing (reported by RequireTemplates) or broken
					break
				}
				ts = append(ts, t)
			}
			if len(ts) == 0 {
				continue
			}
			c := queryCheck{l: l, report: report, rollout: in, step: st, templates: ts}
			c.run(runArgs(ro, ns, st.step.Args))
		}
	}
}

// runArgs is what the engine passes a run (engine's runArgs), with the
// revisions, and a namespace the files do not name, only sampled.
func runArgs(ro *v1alpha1.Rollout, ns string, user []v1alpha1.Argument) []v1alpha1.Argument {
	host := ""
	if hs := ro.Spec.Service.Hosts; len(hs) > 0 {
		host = hs[0]
	}
	out := append([]v1alpha1.Argument(nil), user...)
	return append(out,
		v1alpha1.Argument{Name: "rollout", Value: ro.Name},
		v1alpha1.Argument{Name: "namespace", Value: nsOr(ns, sampleNamespace)},
		v1alpha1.Argument{Name: "service", Value: ro.Spec.Service.Name},
		v1alpha1.Argument{Name: "host", Value: host},
		v1alpha1.Argument{Name: "stableRevision", Value: sampleStableRevision},
		v1alpha1.Argument{Name: "canaryRevision", Value: sampleCanaryRevision},
	)
}

type queryCheck struct {
	l         *loader
	report    func(file string, line int, fieldPath, reason string)
	rollout   queryInput
	step      analysisStep
	templates []queryInput
}

func (c *queryCheck) run(args []v1alpha1.Argument) {
	ts := make([]*v1alpha1.AnalysisTemplate, len(c.templates))
	byName := map[string]queryInput{}
	for i, t := range c.templates {
		ts[i] = t.obj.AnalysisTemplate
		byName[ts[i].Name] = t
	}
	queries, qerrs, err := analysis.RunQueries(ts, args)
	ro := c.rollout
	if err != nil {
		c.report(ro.obj.File, ro.v.lineOf(c.step.path), c.step.path, "Invalid value: the analysis run could not start: "+err.Error())
		return
	}
	for _, qe := range qerrs {
		c.metricError(byName[qe.Template], qe)
	}
	for _, q := range queries {
		c.parse(byName[q.Template], q)
	}
}

func queryPath(i int) string { return fmt.Sprintf("spec.metrics[%d].provider.prometheus.query", i) }

// metricError reports a metric that could not be prepared where the fault
// is: the argument value the Rollout passes, the template's default, or
// the query.
func (c *queryCheck) metricError(t queryInput, qe *analysis.QueryError) {
	var ae *analysis.ArgError
	if !errors.As(qe, &ae) {
		p := queryPath(qe.Index)
		c.report(t.obj.File, t.v.lineOf(p), p, fmt.Sprintf("Invalid value: metric %q: the analysis would fail: %v", qe.Metric, qe.Err))
		return
	}
	where := fmt.Sprintf("in the query of metric %q of template %q", qe.Metric, qe.Template)
	for i, a := range c.step.step.Args {
		if a.Name == ae.Name {
			p := fmt.Sprintf("%s.args[%d].value", c.step.path, i)
			c.report(c.rollout.obj.File, c.rollout.v.lineOf(p), p, fmt.Sprintf("Invalid value: argument %q %s: %v", ae.Name, where, ae.Err))
			return
		}
	}
	for _, tin := range append([]queryInput{t}, c.templates...) {
		for j, a := range tin.obj.AnalysisTemplate.Spec.Args {
			if a.Name == ae.Name && a.Value != nil {
				p := fmt.Sprintf("spec.args[%d].value", j)
				c.report(tin.obj.File, tin.v.lineOf(p), p, fmt.Sprintf("Invalid value: argument %q %s: %v", ae.Name, where, ae.Err))
				return
			}
		}
	}
	p := queryPath(qe.Index)
	reason := fmt.Sprintf("Invalid value: argument %q of metric %q: %v", ae.Name, qe.Metric, ae.Err)
	if runtimeOnly(ae.Name, ae.Value) {
		reason = fmt.Sprintf("Invalid value: argument %q of metric %q stands outside a quoted string, but its value is known only during the rollout (a revision is a hash of 10 hex digits or a backend version) and need not be one PromQL token: put the placeholder in quotes", ae.Name, qe.Metric)
	}
	c.report(t.obj.File, t.v.lineOf(p), p, reason)
}

func runtimeOnly(name, value string) bool {
	switch value {
	case sampleStableRevision, sampleCanaryRevision:
		return name == "stableRevision" || name == "canaryRevision" || name == analysis.ArgRevision
	case sampleNamespace:
		return name == "namespace"
	}
	return false
}

// maxShownQuery bounds the rendered query quoted in a problem.
const maxShownQuery = 300

// parse parses a rendered query with Prometheus's parser and checks that
// it returns what the analysis takes: a number or an instant vector.
func (c *queryCheck) parse(t queryInput, q analysis.RenderedQuery) {
	p := queryPath(q.Index)
	side := ""
	if q.Side != "" {
		side = fmt.Sprintf(" (the %s side)", q.Side)
	}
	shown := untrusted.Text(strings.Join(strings.Fields(q.Text), " "), maxShownQuery)
	expr, err := parser.ParseExpr(q.Text)
	if err != nil {
		c.report(t.obj.File, t.v.lineOf(p), p, fmt.Sprintf("Invalid value: the query of metric %q%s does not parse as PromQL (Rollout %q, %s): %s; rendered: %s",
			q.Metric, side, c.rollout.obj.Rollout.Name, c.step.path, untrusted.Text(err.Error(), maxShownQuery), shown))
		return
	}
	kind := string(expr.Type())
	switch expr.Type() {
	case parser.ValueTypeVector, parser.ValueTypeScalar:
		return
	case parser.ValueTypeMatrix:
		kind = "range vector"
	}
	c.report(t.obj.File, t.v.lineOf(p), p, fmt.Sprintf("Invalid value: the query of metric %q%s returns a %s; the analysis takes a number or an instant vector, e.g. rate(x[5m]) rather than x[5m]", q.Metric, side, kind))
}
