package validation

import (
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

const msgOneRouter = "a router must set exactly one of istio, httpRoute, grpcRoute or replicas"

// validateRouters checks spec.service.routers: one kind per entry, each
// route named once, Istio at most once, and replicas (no router) alone.
// Routers write Kubernetes objects, so they belong to controller mode.
func validateRouters(s *v1alpha1.RolloutSpec, p *field.Path) field.ErrorList {
	rs := s.Service.Routers
	if len(rs) == 0 {
		return nil
	}
	var errs field.ErrorList
	if s.Template == nil {
		errs = append(errs, field.Forbidden(p, "routers write Kubernetes routing objects in controller mode (spec.template); in standalone mode Sluice's xDS serves the plan"))
	}
	errs = maxItems(errs, p, len(rs), 8)
	seen := map[string]bool{}
	replicas := false
	for i, r := range rs {
		rp := p.Index(i)
		var set []string
		if r.Istio != nil {
			set = append(set, "istio")
		}
		if r.HTTPRoute != nil {
			set = append(set, "httpRoute")
		}
		if r.GRPCRoute != nil {
			set = append(set, "grpcRoute")
		}
		if r.Replicas != nil {
			set = append(set, "replicas")
		}
		switch {
		case len(set) == 0:
			errs = append(errs, field.Required(rp, msgOneRouter))
			continue
		case len(set) > 1:
			errs = append(errs, field.Forbidden(rp.Child(set[1]), msgOneRouter))
			continue
		}
		key := set[0]
		replicas = replicas || key == "replicas"
		if r.HTTPRoute != nil {
			key += "/" + r.HTTPRoute.Name
			errs = validateGatewayRoute(errs, rp.Child("httpRoute"), r.HTTPRoute)
		}
		if r.GRPCRoute != nil {
			key += "/" + r.GRPCRoute.Name
			errs = validateGatewayRoute(errs, rp.Child("grpcRoute"), r.GRPCRoute)
		}
		if seen[key] {
			errs = append(errs, field.Duplicate(rp, key))
		}
		seen[key] = true
	}
	if replicas && len(rs) > 1 {
		errs = append(errs, field.Invalid(p, len(rs), "replicas means no router (weights by replica counts); it cannot be combined with routers that split traffic"))
	}
	return errs
}

func validateGatewayRoute(errs field.ErrorList, p *field.Path, r *v1alpha1.GatewayRouteRef) field.ErrorList {
	for _, m := range validation.IsDNS1123Subdomain(r.Name) {
		errs = append(errs, field.Invalid(p.Child("name"), r.Name, m))
	}
	errs = maxItems(errs, p.Child("rules"), len(r.Rules), 16)
	names := map[string]bool{}
	indexes := map[int32]bool{}
	for i, ref := range r.Rules {
		rp := p.Child("rules").Index(i)
		switch {
		case ref.Name != "" && ref.Index != nil:
			errs = append(errs, field.Forbidden(rp.Child("index"), "exactly one of name or index must be set"))
		case ref.Name == "" && ref.Index == nil:
			errs = append(errs, field.Required(rp.Child("name"), "exactly one of name or index must be set"))
		case ref.Name != "":
			for _, m := range validation.IsDNS1123Subdomain(ref.Name) {
				errs = append(errs, field.Invalid(rp.Child("name"), ref.Name, m))
			}
			if names[ref.Name] {
				errs = append(errs, field.Duplicate(rp.Child("name"), ref.Name))
			}
			names[ref.Name] = true
		default:
			errs = atLeast(errs, rp.Child("index"), ref.Index, 0)
			if indexes[*ref.Index] {
				errs = append(errs, field.Duplicate(rp.Child("index"), *ref.Index))
			}
			indexes[*ref.Index] = true
		}
	}
	if c := r.Create; c != nil {
		cp := p.Child("create")
		if len(c.ParentRefs) == 0 {
			errs = append(errs, field.Required(cp.Child("parentRefs"), "a route Sluice creates must be attached to at least one parent"))
		}
		errs = maxItems(errs, cp.Child("parentRefs"), len(c.ParentRefs), 32)
		for i, pr := range c.ParentRefs {
			if pr.Name == "" {
				errs = append(errs, field.Required(cp.Child("parentRefs").Index(i).Child("name"), ""))
			}
		}
		errs = validateHosts(errs, cp.Child("hostnames"), c.Hostnames)
	}
	return errs
}
