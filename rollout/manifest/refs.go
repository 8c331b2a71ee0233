package manifest

import (
	"fmt"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// templateRef is an AnalysisTemplate a Rollout names, and where.
type templateRef struct {
	file      string
	line      int
	field     string
	namespace string
	name      string
}

// analysisStep is an analysis a Rollout runs and the path of its field.
type analysisStep struct {
	path string
	step *v1alpha1.AnalysisStep
}

// analysisSteps lists every analysis a spec runs: background, canary and
// dark-release steps, blue/green pre- and post-promotion.
func analysisSteps(spec *v1alpha1.RolloutSpec) []analysisStep {
	var out []analysisStep
	add := func(path string, a *v1alpha1.AnalysisStep) {
		if a != nil {
			out = append(out, analysisStep{path, a})
		}
	}
	steps := func(prefix string, ss []v1alpha1.CanaryStep) {
		for i := range ss {
			add(fmt.Sprintf("%s[%d].analysis", prefix, i), ss[i].Analysis)
		}
	}
	if bg := spec.Analysis; bg != nil {
		add("spec.analysis", &bg.AnalysisStep)
	}
	st := &spec.Strategy
	if c := st.Canary; c != nil {
		steps("spec.strategy.canary.steps", c.Steps)
	}
	if bg := st.BlueGreen; bg != nil {
		add("spec.strategy.blueGreen.prePromotionAnalysis", bg.PrePromotionAnalysis)
		add("spec.strategy.blueGreen.postPromotionAnalysis", bg.PostPromotionAnalysis)
	}
	if dr := st.DarkRelease; dr != nil {
		add("spec.strategy.darkRelease.analysis", dr.Analysis)
		steps("spec.strategy.darkRelease.steps", dr.Steps)
	}
	return out
}

// templateRefs lists the template names of every analysis a spec runs,
// with the field path of each.
func templateRefs(spec *v1alpha1.RolloutSpec) (paths, names []string) {
	for _, a := range analysisSteps(spec) {
		for j, t := range a.step.Templates {
			paths = append(paths, fmt.Sprintf("%s.templates[%d].name", a.path, j))
			names = append(names, t.Name)
		}
	}
	return paths, names
}

// collectTemplateRefs remembers a Rollout's template names for the check
// at the end of the load.
func (l *loader) collectTemplateRefs(file string, v *value, ro *v1alpha1.Rollout) {
	if !l.o.requireTemplates {
		return
	}
	ns := ro.Namespace
	if ns == "" {
		ns = l.o.namespace
	}
	paths, names := templateRefs(&ro.Spec)
	for i := range paths {
		l.refs = append(l.refs, templateRef{file: file, line: v.lineOf(paths[i]), field: paths[i], namespace: ns, name: names[i]})
	}
}

// checkTemplateRefs reports every template a Rollout names that no file
// of the load defines in the Rollout's namespace: at run time that
// analysis would fail and abort the rollout.
func (l *loader) checkTemplateRefs() {
	have := map[string]bool{}
	for _, o := range l.objects {
		if t := o.AnalysisTemplate; t != nil {
			ns := t.Namespace
			if ns == "" {
				ns = l.o.namespace
			}
			have[ns+"/"+t.Name] = true
		}
	}
	for _, r := range l.refs {
		if have[r.namespace+"/"+r.name] {
			continue
		}
		where := "in the files given"
		if r.namespace != "" {
			where = fmt.Sprintf("in namespace %q in the files given", r.namespace)
		}
		l.problem(r.file, r.line, r.field, fmt.Sprintf("Not found: %q: no AnalysisTemplate of that name %s; the analysis would fail and abort the rollout", r.name, where))
	}
}
