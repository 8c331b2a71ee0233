package analysis

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
)

// Arguments that compare metrics get on top of the run's: the same query is
// rendered once per side.
const (
	ArgRevision = "revision"
	ArgSubset   = "subset"
)

// NewRun creates the AnalysisRun the engine asked for (see
// engine.AnalysisRun): the metrics of templates, in order, and the value of
// every argument. args are the arguments the engine passes, the built-ins
// (rollout, namespace, service, host, stableRevision, canaryRevision)
// included; a template's default fills in an argument not passed, and an
// argument that has neither is an error naming the template. Every query is
// rendered and every condition compiled here, so a run that cannot measure
// fails at creation with a clear error rather than mid-rollout.
//
// The run's status is empty; the first Step starts it.
func NewRun(name, namespace string, templates []*v1alpha1.AnalysisTemplate, args []v1alpha1.Argument) (*v1alpha1.AnalysisRun, error) {
	if len(templates) == 0 {
		return nil, errors.New("analysis run needs at least one template")
	}
	values, err := resolveArgs(templates, args)
	if err != nil {
		return nil, err
	}
	run := &v1alpha1.AnalysisRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AnalysisRun"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
	}
	from := map[string]string{}
	for _, t := range templates {
		run.Spec.Templates = append(run.Spec.Templates, v1alpha1.TemplateRef{Name: t.Name})
		for _, m := range t.Spec.Metrics {
			if prev, dup := from[m.Name]; dup {
				return nil, fmt.Errorf("metric %q is defined by both template %q and template %q; metric names must be unique within a run", m.Name, prev, t.Name)
			}
			from[m.Name] = t.Name
			run.Spec.Metrics = append(run.Spec.Metrics, *m.DeepCopy())
		}
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		run.Spec.Args = append(run.Spec.Args, v1alpha1.Argument{Name: n, Value: values[n]})
	}
	if _, err := compile(&run.Spec); err != nil {
		return nil, err
	}
	return run, nil
}

// resolveArgs returns the value of every argument: passed, else the
// templates' default.
func resolveArgs(templates []*v1alpha1.AnalysisTemplate, args []v1alpha1.Argument) (map[string]string, error) {
	values := map[string]string{}
	for _, a := range args {
		if _, dup := values[a.Name]; dup {
			return nil, fmt.Errorf("argument %q is passed twice", a.Name)
		}
		values[a.Name] = a.Value
	}
	declared := map[string]bool{}
	defaults := map[string]string{}
	defaultFrom := map[string]string{}
	var missing []string
	for _, t := range templates {
		for _, a := range t.Spec.Args {
			declared[a.Name] = true
			if _, passed := values[a.Name]; passed {
				continue
			}
			if a.Value == nil {
				missing = append(missing, fmt.Sprintf("argument %q of template %q has no default and is not passed", a.Name, t.Name))
				continue
			}
			if prev, ok := defaults[a.Name]; ok && prev != *a.Value {
				return nil, fmt.Errorf("argument %q has default %q in template %q but %q in template %q; pass it explicitly", a.Name, prev, defaultFrom[a.Name], *a.Value, t.Name)
			}
			defaults[a.Name], defaultFrom[a.Name] = *a.Value, t.Name
		}
	}
	if len(missing) > 0 {
		return nil, errors.New(strings.Join(missing, "; "))
	}
	// An argument nobody declared is most likely a typo in the Rollout;
	// dropping it silently would let the template's default win unnoticed.
	for _, a := range args {
		if !declared[a.Name] && !validation.IsBuiltinArg(a.Name) {
			return nil, fmt.Errorf("argument %q is passed but no template declares it (templates: %s)", a.Name, templateNames(templates))
		}
	}
	for n, v := range defaults {
		values[n] = v
	}
	return values, nil
}

func templateNames(ts []*v1alpha1.AnalysisTemplate) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}
