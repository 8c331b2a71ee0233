package istio

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

// destinationRule renders the stable and canary subsets into Git's
// DestinationRule (other subsets, traffic policies and fields as declared),
// or a DestinationRule of Sluice's own for host.
func (r *renderer) destinationRule(host string) (*networkingv1.DestinationRule, error) {
	var (
		dr   = &networkingv1.DestinationRule{TypeMeta: destinationRuleType}
		err  error
		decl = r.in.DestinationRule
	)
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
		if dr.ObjectMeta, err = r.objectMeta(name, nil, nil); err != nil {
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
		}
		if dr.ObjectMeta, err = r.objectMeta(decl.Name, &decl.ObjectMeta, map[string]string{AnnotationDeclaredHash: hash}); err != nil {
			return nil, err
		}
		dr.ResourceVersion = rv
		proto.Merge(&dr.Spec, base)
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
	return dr, nil
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
