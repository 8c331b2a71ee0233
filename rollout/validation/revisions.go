package validation

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// extraRevisions walks the steps of a canary or dark release the way the
// engine folds them and checks the extra revisions at every point: a
// source that fits the mode, distinct revisions, a stop of one that runs,
// weights that leave stable a share, and analysis sides that exist then.
func extraRevisions(s *v1alpha1.RolloutSpec, p *field.Path) field.ErrorList {
	var steps []v1alpha1.CanaryStep
	switch {
	case s.Strategy.Canary != nil:
		steps, p = s.Strategy.Canary.Steps, p.Child("canary", "steps")
	case s.Strategy.DarkRelease != nil:
		steps, p = s.Strategy.DarkRelease.Steps, p.Child("darkRelease", "steps")
	default:
		return nil
	}
	var errs field.ErrorList
	var weight int32
	running := map[string]*v1alpha1.RevisionStep{}
	sum := func() int32 {
		t := weight
		for _, r := range running {
			t += r.Weight
		}
		return t
	}
	for i := range steps {
		sp := p.Index(i)
		if w := steps[i].SetWeight; w != nil {
			weight = *w
			if t := sum(); t > 100 && *w <= 100 && len(running) > 0 {
				errs = append(errs, field.Invalid(sp.Child("setWeight"), *w, overWeight(weight, running)))
			}
		}
		if a := steps[i].Analysis; a != nil {
			for _, side := range []struct{ name, value string }{{"baseline", a.Baseline}, {"candidate", a.Candidate}} {
				if side.value == "" || side.value == "stable" || side.value == "canary" || running[side.value] != nil {
					continue
				}
				errs = append(errs, field.Invalid(sp.Child("analysis", side.name), side.value,
					"must be stable, canary or an extra revision running at this step ("+names(running)+")"))
			}
		}
		r := steps[i].SetRevision
		if r == nil {
			continue
		}
		rp := sp.Child("setRevision")
		errs = pattern(errs, rp.Child("name"), r.Name, routeNameRE)
		errs = maxLength(errs, rp.Child("name"), r.Name, 30)
		if r.Name == "stable" || r.Name == "canary" {
			errs = append(errs, field.Invalid(rp.Child("name"), r.Name, "stable and canary are the rollout's own subsets; name the extra revision otherwise"))
		}
		if r.Backend == nil && r.Template == nil {
			if running[r.Name] == nil {
				errs = append(errs, field.Invalid(rp.Child("name"), r.Name,
					"without backend or template this step stops an extra revision, but none of this name runs here ("+names(running)+")"))
			}
			if r.Weight != 0 || len(r.Match) > 0 || r.Replicas != nil || r.Duration != nil {
				errs = append(errs, field.Forbidden(rp, "a step that stops a revision (no backend or template) sets nothing else"))
			}
			delete(running, r.Name)
			continue
		}
		errs = revisionSource(errs, s, r, running, rp)
		errs = inRange(errs, rp.Child("weight"), r.Weight, 0, 100)
		errs = validateMatches(errs, rp.Child("match"), r.Match, 8)
		errs = positiveDuration(errs, rp.Child("duration"), r.Duration)
		errs = atLeast(errs, rp.Child("replicas"), r.Replicas, 0)
		if r.Replicas != nil && *r.Replicas == 0 && (r.Weight > 0 || len(r.Match) > 0) {
			// Traffic waits for an available replica that would never come.
			errs = append(errs, field.Invalid(rp.Child("replicas"), 0, "a revision that gets traffic (weight or match) needs at least 1 replica"))
		}
		running[r.Name] = r
		if t := sum(); t > 100 {
			errs = append(errs, field.Invalid(rp.Child("weight"), r.Weight, overWeight(weight, running)))
		}
	}
	return errs
}

func revisionSource(errs field.ErrorList, s *v1alpha1.RolloutSpec, r *v1alpha1.RevisionStep, running map[string]*v1alpha1.RevisionStep, rp *field.Path) field.ErrorList {
	switch {
	case r.Backend != nil && r.Template != nil:
		return append(errs, field.Forbidden(rp.Child("template"), "set backend (standalone) or template (controller mode), not both"))
	case r.Backend != nil:
		if s.Backend == nil {
			return append(errs, field.Forbidden(rp.Child("backend"), "backend runs a revision in standalone mode; this Rollout has a template, so give the extra revision a template"))
		}
		errs = append(errs, validateBackend(r.Backend, rp.Child("backend"))...)
		if r.Replicas != nil {
			errs = append(errs, field.Forbidden(rp.Child("replicas"), "replicas applies to template (controller mode), not backend"))
		}
		vp := rp.Child("backend", "version")
		if r.Backend.Version == s.Backend.Version {
			errs = append(errs, field.Invalid(vp, r.Backend.Version, "is the canary's version (spec.backend.version); an extra revision needs a version of its own"))
		}
		for name, o := range running {
			if name != r.Name && o.Backend != nil && o.Backend.Version == r.Backend.Version {
				errs = append(errs, field.Invalid(vp, r.Backend.Version, fmt.Sprintf("is also the version of extra revision %q", name)))
			}
		}
	default:
		if s.Template == nil {
			return append(errs, field.Forbidden(rp.Child("template"), "template derives a revision from the Rollout's pod template (controller mode); this Rollout has a backend, so give the extra revision a backend"))
		}
		tp := rp.Child("template")
		if f := r.Template.From; f != v1alpha1.RevisionFromStable && f != v1alpha1.RevisionFromCanary {
			errs = append(errs, field.NotSupported(tp.Child("from"), f, []string{string(v1alpha1.RevisionFromStable), string(v1alpha1.RevisionFromCanary)}))
		}
		containers := map[string]bool{}
		for _, c := range s.Template.Spec.Containers {
			containers[c.Name] = true
		}
		keys := make([]string, 0, len(r.Template.Images))
		for k := range r.Template.Images {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ip := tp.Child("images").Key(k)
			if !containers[k] {
				errs = append(errs, field.NotFound(ip, "no container of this name in spec.template"))
			}
			if strings.TrimSpace(r.Template.Images[k]) == "" {
				errs = append(errs, field.Required(ip, "image must not be empty"))
			}
		}
	}
	return errs
}

func overWeight(canary int32, running map[string]*v1alpha1.RevisionStep) string {
	parts := []string{fmt.Sprintf("canary %d", canary)}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range running {
			if !yield(n) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%s %d", n, running[n].Weight))
	}
	return "weights add up to more than 100 at this step (" + strings.Join(parts, ", ") + "); stable takes what the canary and the extra revisions leave"
}

func names(running map[string]*v1alpha1.RevisionStep) string {
	if len(running) == 0 {
		return "none runs"
	}
	out := make([]string, 0, len(running))
	for n := range running {
		out = append(out, n)
	}
	sort.Strings(out)
	return "running: " + strings.Join(out, ", ")
}
