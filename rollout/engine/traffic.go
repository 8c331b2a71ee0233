package engine

import (
	"strings"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// traffic is the routing state reached after executing a prefix of the
// program. The plan is a pure function of it, the spec and the revisions,
// which is why status only needs the step index to resume.
type traffic struct {
	// active: a canary receives traffic; false means 100% stable.
	active  bool
	weight  int32
	routes  []matchRoute
	mirror  int32
	preview *v1alpha1.PreviewSpec
	// full: promotion; 100% to the canary and no match routes.
	full bool
	// extras are the extra revisions the steps run, in the order they
	// were first started.
	extras []extraTraffic
}

// extraTraffic is an extra revision as the steps left it.
type extraTraffic struct {
	spec *v1alpha1.RevisionStep
	// since is the index of the step that started or last changed it.
	since int
}

type matchRoute struct {
	name  string
	match []v1alpha1.RouteMatch
}

// sendsToCanary reports whether t routes or mirrors any request to the
// canary; the canary subset at 0% alone sends it nothing.
func (t traffic) sendsToCanary() bool {
	if !t.active {
		return false
	}
	return t.full || t.weight > 0 || t.mirror > 0 || len(t.routes) > 0 ||
		(t.preview != nil && (len(t.preview.Match) > 0 || len(t.preview.Hosts) > 0))
}

// fold applies steps[0..upto) to an empty routing state.
func fold(steps []step, upto int) traffic {
	t := traffic{active: true}
	for i, s := range steps[:upto] {
		switch s.kind {
		case stepWeight:
			t.weight = s.weight
		case stepMirror:
			t.mirror = s.mirror
		case stepPreview:
			t.preview = s.preview
		case stepRoute:
			t.routes = setRoute(t.routes, s.route, s.match)
		case stepRevision:
			t.extras = setExtra(t.extras, s.revision, i)
		}
	}
	return t
}

// setExtra replaces the named extra revision in place, appends it, or
// removes it when the step stops it.
func setExtra(es []extraTraffic, r *v1alpha1.RevisionStep, since int) []extraTraffic {
	out := make([]extraTraffic, 0, len(es)+1)
	found := false
	for _, e := range es {
		if e.spec.Name != r.Name {
			out = append(out, e)
			continue
		}
		found = true
		if startsRevision(r) {
			out = append(out, extraTraffic{spec: r, since: since})
		}
	}
	if !found && startsRevision(r) {
		out = append(out, extraTraffic{spec: r, since: since})
	}
	return out
}

// extra returns the named extra revision's traffic, if t runs it.
func (t traffic) extra(name string) (extraTraffic, bool) {
	for _, e := range t.extras {
		if e.spec.Name == name {
			return e, true
		}
	}
	return extraTraffic{}, false
}

// foldRouted is the traffic of the first k steps, with len(steps)+1 for
// promotion and routedNone for no rollout.
func foldRouted(steps []step, k int) traffic {
	n := len(steps)
	switch {
	case k == routedNone:
		return traffic{}
	case k > n:
		t := fold(steps, n)
		t.full = true
		return t
	}
	return fold(steps, k)
}

// setRoute replaces the named route in place, appends it, or removes it when
// match is empty, keeping the order routes were first added in.
func setRoute(rs []matchRoute, name string, match []v1alpha1.RouteMatch) []matchRoute {
	out := make([]matchRoute, 0, len(rs)+1)
	found := false
	for _, r := range rs {
		if r.name != name {
			out = append(out, r)
			continue
		}
		found = true
		if len(match) > 0 {
			out = append(out, matchRoute{name: name, match: match})
		}
	}
	if !found && len(match) > 0 {
		out = append(out, matchRoute{name: name, match: match})
	}
	return out
}

// buildPlan renders the traffic state into a sealed plan.
func buildPlan(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, t traffic) plan.Plan {
	spec := &ro.Spec
	p := plan.Plan{
		Service:   spec.Service.Name,
		Namespace: ro.Namespace,
		Subsets:   []plan.Subset{{Name: plan.Stable, Revision: st.StableRevision}},
	}
	if !t.active || st.CanaryRevision == "" {
		for _, h := range spec.Service.Hosts {
			p.Hosts = append(p.Hosts, plan.Host{Name: h, Port: uint32(spec.Service.Port), Routes: stableOnly(spec)})
		}
		p.Seal()
		return p
	}
	p.Subsets = append(p.Subsets, plan.Subset{Name: plan.Canary, Revision: st.CanaryRevision})
	policy := convertPolicy(spec.Service.Policy)
	weight := planWeight(spec, t)
	extras := routedExtras(st, t)
	for _, e := range extras {
		p.Subsets = append(p.Subsets, plan.Subset{Name: e.name, Revision: e.revision})
	}
	primary := plan.Route{
		Name:         "primary",
		Destinations: splitWith(weight, extras),
		Policy:       policy,
	}
	if t.mirror > 0 && !t.full {
		primary.Mirror = &plan.Mirror{Subset: plan.Canary, Percent: t.mirror}
	}

	var routes []plan.Route
	if !t.full {
		if t.preview != nil && len(t.preview.Match) > 0 {
			routes = append(routes, toCanary(previewRoute, t.preview.Match, policy))
		}
		for _, r := range t.routes {
			routes = append(routes, toCanary(r.name, r.match, policy))
		}
		for _, e := range extras {
			if len(e.match) > 0 {
				routes = append(routes, plan.Route{
					Name:         extraRoutePrefix + e.name,
					Match:        convertMatches(e.match),
					Destinations: []plan.Destination{{Subset: e.name, Weight: 100}},
					Policy:       policy,
				})
			}
		}
		primary.Affinity = affinity(spec.Service.SessionAffinity)
	}
	routes = withRules(spec.Service.Policy, append(routes, primary))
	for _, h := range spec.Service.Hosts {
		p.Hosts = append(p.Hosts, plan.Host{Name: h, Port: uint32(spec.Service.Port), Routes: routes})
	}
	if t.preview != nil {
		for _, h := range t.preview.Hosts {
			p.Hosts = append(p.Hosts, plan.Host{
				Name:   h,
				Port:   uint32(spec.Service.Port),
				Routes: []plan.Route{{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}, Policy: policy}},
			})
		}
	}
	p.Seal()
	return p
}

func stableOnly(spec *v1alpha1.RolloutSpec) []plan.Route {
	policy := convertPolicy(spec.Service.Policy)
	primary := plan.Route{Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}, Policy: policy}
	return withRules(spec.Service.Policy, []plan.Route{primary})
}

// splitWith is split with the extra revisions' weights taken from
// stable's share; the engine's validation keeps the canary's and the
// extras' weights within 100, and stable never goes below 0 here.
func splitWith(canary int32, extras []routedExtra) []plan.Destination {
	d := split(canary)
	for _, e := range extras {
		w := min(e.weight, d[0].Weight)
		d[0].Weight -= w
		d = append(d, plan.Destination{Subset: e.name, Weight: w})
	}
	return d
}

// split keeps both subsets on the route even at 0 or 100 so the route's
// shape, and with it every proxy's cluster list, stays the same from step to
// step.
func split(canary int32) []plan.Destination {
	return []plan.Destination{
		{Subset: plan.Stable, Weight: 100 - canary},
		{Subset: plan.Canary, Weight: canary},
	}
}

func toCanary(name string, match []v1alpha1.RouteMatch, policy *plan.Policy) plan.Route {
	return plan.Route{
		Name:         name,
		Match:        convertMatches(match),
		Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}},
		Policy:       policy,
	}
}

// affinity is the session key of the rollout's weighted route. It is
// kept at every weight of the rollout, 0 and 100 included, so the data
// plane holds the pinned sessions' structure ready before the first split
// and keeps it through the last one; promotion and abort drop it.
func affinity(aff *v1alpha1.SessionAffinity) *plan.Affinity {
	switch {
	case aff == nil:
		return nil
	case aff.Header != nil:
		return &plan.Affinity{Header: aff.Header.Name}
	case aff.Cookie != nil:
		a := &plan.Affinity{Cookie: aff.Cookie.Name}
		if a.Cookie == "" {
			a.Cookie = v1alpha1.DefaultAffinityCookie
		}
		if aff.Cookie.MaxAge != nil {
			a.CookieTTL = aff.Cookie.MaxAge.Duration
		}
		return a
	}
	return nil
}

// rule is a policy for the requests that match it, as the plan needs it.
type rule struct {
	name   string
	match  []plan.Match
	policy *plan.Policy
}

// policyRules are the service's per-match policies in order: a fault with
// a match of its own first (named "fault"), then spec rules. Each rule's
// policy is the service's with the rule's fields in place of the ones it
// sets.
func policyRules(rp *v1alpha1.RoutePolicy) []rule {
	if rp == nil {
		return nil
	}
	var out []rule
	if rp.Fault != nil && len(rp.Fault.Match) > 0 {
		pol := convertPolicy(rp)
		if pol == nil {
			pol = &plan.Policy{}
		}
		pol.Fault = convertFault(rp.Fault)
		out = append(out, rule{name: "fault", match: convertMatches(rp.Fault.Match), policy: pol})
	}
	for _, r := range rp.Rules {
		pol := &plan.Policy{}
		if base := convertPolicy(rp); base != nil {
			*pol = *base
		}
		if r.Timeout != nil {
			pol.Timeout = r.Timeout.Duration
		}
		if r.Retries != nil {
			pol.Retries = convertRetries(r.Retries)
		}
		if r.Fault != nil {
			pol.Fault = convertFault(r.Fault)
		}
		out = append(out, rule{name: "rule-" + r.Name, match: convertMatches(r.Match), policy: pol})
	}
	return out
}

// withRules applies per-match policies: ahead of every route it puts, for
// each rule, a copy that matches the route's own conditions and the
// rule's, with the same destinations, mirror and affinity and the rule's
// policy. Matching requests thus get the rule's policy wherever they would
// have gone, a rule never shadows a route to the canary, and the first
// rule that matches wins. A rule's copy of the catch-all route is named
// after the rule, its copy of another route "<route>-<rule>".
func withRules(rp *v1alpha1.RoutePolicy, routes []plan.Route) []plan.Route {
	rules := policyRules(rp)
	if len(rules) == 0 {
		return routes
	}
	out := make([]plan.Route, 0, (len(rules)+1)*len(routes))
	for _, r := range routes {
		for _, ru := range rules {
			cp := plan.Route{
				Name:         r.Name + "-" + ru.name,
				Destinations: r.Destinations,
				Mirror:       r.Mirror,
				Policy:       ru.policy,
				Affinity:     r.Affinity,
			}
			if len(r.Match) == 0 {
				cp.Name, cp.Match = ru.name, ru.match
			} else {
				for _, m := range r.Match {
					for _, f := range ru.match {
						if both, ok := conjoin(m, f); ok {
							cp.Match = append(cp.Match, both)
						}
					}
				}
			}
			if len(cp.Match) > 0 {
				out = append(out, cp)
			}
		}
		out = append(out, r)
	}
	return out
}

// conjoin is the match that holds when both a and b hold; ok is false when
// no request can satisfy both (two different paths).
func conjoin(a, b plan.Match) (plan.Match, bool) {
	out := plan.Match{
		Headers: append(append([]plan.HeaderMatch(nil), a.Headers...), b.Headers...),
		Cookies: append(append([]plan.CookieMatch(nil), a.Cookies...), b.Cookies...),
		URI:     a.URI,
	}
	switch {
	case b.URI == nil:
	case a.URI == nil:
		out.URI = b.URI
	case *a.URI == *b.URI:
	case !a.URI.Prefix && b.URI.Prefix && strings.HasPrefix(a.URI.Value, b.URI.Value):
	case a.URI.Prefix && !b.URI.Prefix && strings.HasPrefix(b.URI.Value, a.URI.Value):
		out.URI = b.URI
	case a.URI.Prefix && b.URI.Prefix && strings.HasPrefix(a.URI.Value, b.URI.Value):
	case a.URI.Prefix && b.URI.Prefix && strings.HasPrefix(b.URI.Value, a.URI.Value):
		out.URI = b.URI
	default:
		return plan.Match{}, false
	}
	return out, true
}

func convertPolicy(rp *v1alpha1.RoutePolicy) *plan.Policy {
	if rp == nil {
		return nil
	}
	p := &plan.Policy{}
	if rp.Timeout != nil {
		p.Timeout = rp.Timeout.Duration
	}
	if r := rp.Retries; r != nil {
		p.Retries = convertRetries(r)
	}
	if rp.Fault != nil && len(rp.Fault.Match) == 0 {
		p.Fault = convertFault(rp.Fault)
	}
	if p.Timeout == 0 && p.Retries == nil && p.Fault == nil {
		return nil
	}
	return p
}

func convertRetries(r *v1alpha1.RetryPolicy) *plan.Retries {
	out := &plan.Retries{Attempts: r.Attempts, RetryOn: r.RetryOn}
	if r.PerTryTimeout != nil {
		out.PerTryTimeout = r.PerTryTimeout.Duration
	}
	return out
}

func convertFault(f *v1alpha1.FaultPolicy) *plan.Fault {
	out := &plan.Fault{}
	if a := f.Abort; a != nil {
		out.Abort = &plan.FaultAbort{Percent: a.Percent}
		if a.HTTPStatus != nil {
			out.Abort.HTTPStatus = *a.HTTPStatus
		}
		if a.GRPCStatus != nil {
			out.Abort.GRPCStatus = *a.GRPCStatus
		}
	}
	if d := f.Delay; d != nil {
		out.Delay = &plan.FaultDelay{Delay: d.FixedDelay.Duration, Percent: d.Percent}
	}
	return out
}

func convertMatches(in []v1alpha1.RouteMatch) []plan.Match {
	out := make([]plan.Match, 0, len(in))
	for _, m := range in {
		var pm plan.Match
		for _, h := range m.Headers {
			pm.Headers = append(pm.Headers, convertHeader(h))
		}
		if u := m.URI; u != nil {
			if u.Prefix != nil {
				pm.URI = &plan.URIMatch{Prefix: true, Value: *u.Prefix}
			} else if u.Exact != nil {
				pm.URI = &plan.URIMatch{Value: *u.Exact}
			}
		}
		for _, c := range m.Cookies {
			pm.Cookies = append(pm.Cookies, plan.CookieMatch{Name: c.Name, Value: c.Value})
		}
		out = append(out, pm)
	}
	return out
}

func convertHeader(h v1alpha1.HeaderMatch) plan.HeaderMatch {
	switch {
	case h.Exact != nil:
		return plan.HeaderMatch{Name: h.Name, Kind: plan.HeaderExact, Value: *h.Exact}
	case h.Prefix != nil:
		return plan.HeaderMatch{Name: h.Name, Kind: plan.HeaderPrefix, Value: *h.Prefix}
	case h.Regex != nil:
		return plan.HeaderMatch{Name: h.Name, Kind: plan.HeaderRegex, Value: *h.Regex}
	case h.Present != nil && !*h.Present:
		return plan.HeaderMatch{Name: h.Name, Kind: plan.HeaderAbsent}
	}
	return plan.HeaderMatch{Name: h.Name, Kind: plan.HeaderPresent}
}
