package istio

import (
	"encoding/json"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

// destinationRule renders the plan's subsets (stable, canary and any
// extra revision's) into Git's DestinationRule (other subsets, traffic
// policies and fields as declared), or a DestinationRule of Sluice's own
// for host.
func (r *renderer) destinationRule(host string) (*networkingv1.DestinationRule, error) {
	var (
		dr     = &networkingv1.DestinationRule{TypeMeta: destinationRuleType}
		err    error
		decl   = r.in.DestinationRule
		extras = extraSubsets(&r.in.Plan)
		stale  []string
	)
	record, err := recordSubsets(extras)
	if err != nil {
		return nil, err
	}
	if decl == nil {
		name := r.in.DestinationRuleName
		if name == "" {
			name = r.in.Plan.Service
		}
		if l := r.live.DestinationRule; l != nil {
			if err := r.checkOwned(l); err != nil {
				return nil, err
			}
		}
		if dr.ObjectMeta, err = r.objectMeta(name, nil, record); err != nil {
			return nil, err
		}
		dr.Spec.Host = host
	} else {
		hash, err := declaredHash(&decl.Spec)
		if err != nil {
			return nil, err
		}
		// As for the VirtualService: while Git's declaration is the one
		// last written, the live spec is the base (see Render).
		base, rv := &decl.Spec, ""
		if l := r.live.DestinationRule; l != nil && l.Annotations[AnnotationDeclaredHash] == hash {
			base, rv = &l.Spec, l.ResourceVersion
			stale = recordedSubsets(l.Annotations[AnnotationExtraSubsets])
		}
		record[AnnotationDeclaredHash] = hash
		if dr.ObjectMeta, err = r.objectMeta(decl.Name, &decl.ObjectMeta, record); err != nil {
			return nil, err
		}
		dr.ResourceVersion = rv
		proto.Merge(&dr.Spec, base)
		dropStale(&dr.Spec, stale, extras, &decl.Spec)
	}
	stable := r.in.Plan.Revision(plan.Stable)
	canary := r.in.Plan.Revision(plan.Canary)
	if canary == "" {
		// Outside a rollout the canary subset selects the stable revision:
		// the subset list keeps its shape, and a route that still names
		// the canary during a change-over reaches serving pods, not none.
		canary = stable
	}
	if stable == "" {
		return nil, fmt.Errorf("plan has no %s subset", plan.Stable)
	}
	setSubset(&dr.Spec, plan.Stable, r.label, stable)
	setSubset(&dr.Spec, plan.Canary, r.label, canary)
	for _, x := range extras {
		setSubset(&dr.Spec, x.Name, r.label, x.Revision)
	}
	return dr, nil
}

// extraSubsets are the plan's subsets other than stable and canary: the
// extra revisions', in plan order.
func extraSubsets(p *plan.Plan) []plan.Subset {
	var out []plan.Subset
	for _, s := range p.Subsets {
		if s.Name != plan.Stable && s.Name != plan.Canary {
			out = append(out, s)
		}
	}
	return out
}

// recordSubsets is the AnnotationExtraSubsets record of the extra subsets
// written: their names as a JSON list; no annotation without any.
func recordSubsets(extras []plan.Subset) (map[string]string, error) {
	if len(extras) == 0 {
		return map[string]string{}, nil
	}
	names := make([]string, len(extras))
	for i, x := range extras {
		names[i] = x.Name
	}
	b, err := json.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("recording extra subsets: %w", err)
	}
	return map[string]string{AnnotationExtraSubsets: string(b)}, nil
}

// recordedSubsets reads an AnnotationExtraSubsets record; an unreadable
// one names nothing.
func recordedSubsets(record string) []string {
	var names []string
	if record == "" || json.Unmarshal([]byte(record), &names) != nil {
		return nil
	}
	return names
}

// dropStale removes from a spec based on the live object the extra
// subsets Sluice wrote last time (stale) that the plan no longer has. A
// subset of that name that Git declares gets Git's version back.
func dropStale(spec *networking.DestinationRule, stale []string, extras []plan.Subset, declared *networking.DestinationRule) {
	for _, name := range stale {
		if slices.ContainsFunc(extras, func(x plan.Subset) bool { return x.Name == name }) {
			continue
		}
		i := slices.IndexFunc(spec.Subsets, func(s *networking.Subset) bool { return s.Name == name })
		if i < 0 {
			continue
		}
		if j := slices.IndexFunc(declared.Subsets, func(s *networking.Subset) bool { return s.Name == name }); j >= 0 {
			spec.Subsets[i] = proto.Clone(declared.Subsets[j]).(*networking.Subset)
			continue
		}
		spec.Subsets = slices.Delete(spec.Subsets, i, i+1)
	}
}

// setSubset makes the named subset select exactly one revision. Other
// labels Git put on it are dropped on purpose: "version: v1" next to the
// revision would select nothing once another revision becomes stable. The
// subset's own traffic policy stays.
func setSubset(spec *networking.DestinationRule, name, label, revision string) {
	labels := map[string]string{label: revision}
	for _, s := range spec.Subsets {
		if s.Name == name {
			s.Labels = labels
			return
		}
	}
	spec.Subsets = append(spec.Subsets, &networking.Subset{Name: name, Labels: labels})
}
