package validation

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// What a Gateway API route cannot carry (docs/gateway-api.md, "Limits"):
// refused here rather than when the step that needs it is written, which
// would stop the rollout half way.

// gatewayMaxCookies is how many cookie conditions one match may hold: the
// Gateway API has no cookie match, so Sluice writes one pattern over the
// Cookie header with every order as an alternative.
const gatewayMaxCookies = 3

// validateGatewayLimits checks every match the plan may route by and the
// blue/green preview hosts against what an HTTPRoute or GRPCRoute can
// express, when the spec writes to one.
func validateGatewayLimits(s *v1alpha1.RolloutSpec, p *field.Path) field.ErrorList {
	if !s.Service.UsesGatewayAPI() {
		return nil
	}
	var errs field.ErrorList
	check := func(mp *field.Path, ms []v1alpha1.RouteMatch) {
		for i, m := range ms {
			ip := mp.Index(i)
			for j, h := range m.Headers {
				hp := ip.Child("headers").Index(j)
				if strings.HasPrefix(h.Name, ":") {
					errs = append(errs, field.Invalid(hp.Child("name"), h.Name, "a Gateway API route cannot match a pseudo-header"))
				}
				if h.Present != nil && !*h.Present {
					errs = append(errs, field.Invalid(hp.Child("present"), false, "a Gateway API route cannot require a header to be absent"))
				}
			}
			if len(m.Cookies) > gatewayMaxCookies {
				errs = append(errs, field.TooMany(ip.Child("cookies"), len(m.Cookies), gatewayMaxCookies))
			}
		}
	}
	st := p.Child("strategy")
	steps := func(sp *field.Path, ss []v1alpha1.CanaryStep) {
		for i, s := range ss {
			if hr := s.SetHeaderRoute; hr != nil {
				check(sp.Index(i).Child("setHeaderRoute", "match"), hr.Match)
			}
			if r := s.SetRevision; r != nil {
				check(sp.Index(i).Child("setRevision", "match"), r.Match)
			}
		}
	}
	if c := s.Strategy.Canary; c != nil {
		steps(st.Child("canary", "steps"), c.Steps)
	}
	if d := s.Strategy.DarkRelease; d != nil {
		check(st.Child("darkRelease", "match"), d.Match)
		steps(st.Child("darkRelease", "steps"), d.Steps)
	}
	if bg := s.Strategy.BlueGreen; bg != nil {
		pp := st.Child("blueGreen", "preview")
		check(pp.Child("match"), bg.Preview.Match)
		if len(bg.Preview.Hosts) > 0 {
			errs = append(errs, field.Forbidden(pp.Child("hosts"), "a Gateway API route has one set of rules for all its hostnames, so preview hosts cannot be routed apart; preview by match instead"))
		}
	}
	return errs
}

// GatewayPolicyWarning and GatewayAffinityWarning: settings a Gateway API
// route does not get (Sluice writes weights, matches and mirrors only).
const (
	GatewayPolicyWarning = "Gateway API routes do not get the policy (timeout, retries, faults, rules): set them on the route's rules yourself; " +
		"Sluice's xDS and Istio still carry them"
	GatewayAffinityWarning = "Gateway API routes do not get session affinity: the gateway draws each request by weight; " +
		"Sluice's xDS still pins sessions"
)

func gatewayWarnings(s *v1alpha1.RolloutSpec) []Warning {
	if !s.Service.UsesGatewayAPI() {
		return nil
	}
	var ws []Warning
	sp := field.NewPath("spec", "service")
	if s.Service.Policy != nil {
		ws = append(ws, Warning{Field: sp.Child("policy").String(), Message: GatewayPolicyWarning})
	}
	if s.Service.SessionAffinity != nil {
		ws = append(ws, Warning{Field: sp.Child("sessionAffinity").String(), Message: GatewayAffinityWarning})
	}
	return ws
}
