package istio

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sluicehq/sluice/rollout/plan"
)

// target is where a managed route sends traffic: the service host (and port,
// if Git names one) whose subsets the DestinationRule defines.
type target struct {
	host string
	port *networking.PortSelector
	// canaryRevision is the value of the affinity cookie the canary sets.
	canaryRevision string
}

func (t target) destination(subset string) *networking.Destination {
	d := &networking.Destination{Host: t.host, Subset: subset}
	if t.port != nil {
		d.Port = proto.Clone(t.port).(*networking.PortSelector)
	}
	return d
}

// expand renders the plan's routes in place of one managed route. stub is
// the route as Git declares it (nil when Sluice owns the whole
// VirtualService): its own matches, rewrite, CORS and request headers stay,
// so the plan splits exactly the traffic that route used to receive. The
// plan's match routes are narrowed to the stub's matches and come first; the
// plan's last route keeps the stub's matches and carries the weights.
// name gives each rendered route its name from the plan route's.
func expand(stub *networking.HTTPRoute, routes []plan.Route, t target, name func(i int, r plan.Route) string) ([]*networking.HTTPRoute, error) {
	if stub != nil && (stub.Redirect != nil || stub.DirectResponse != nil || stub.Delegate != nil) {
		// Such a route sends nothing to the service; there is no traffic to split.
		return nil, fmt.Errorf("route %q redirects, responds directly or delegates; Sluice can only manage a route that forwards to the service", stub.GetName())
	}
	out := make([]*networking.HTTPRoute, 0, len(routes))
	for i, r := range routes {
		hr := &networking.HTTPRoute{}
		if stub != nil {
			hr = proto.Clone(stub).(*networking.HTTPRoute)
		}
		hr.Name = name(i, r)
		if len(r.Match) > 0 {
			m, err := narrow(hr.Match, r.Match)
			if err != nil {
				return nil, fmt.Errorf("plan route %q: %w", r.Name, err)
			}
			if len(m) == 0 {
				// No request of this managed route can satisfy the plan
				// route's match (two different paths): the route would
				// never match, so it is left out rather than written dead.
				continue
			}
			hr.Match = m
		}
		dests, err := destinations(r, t)
		if err != nil {
			return nil, fmt.Errorf("plan route %q: %w", r.Name, err)
		}
		hr.Route = dests
		if m := r.Mirror; m != nil {
			setMirror(hr, m, t)
		}
		if err := setPolicy(hr, r.Policy); err != nil {
			return nil, fmt.Errorf("plan route %q: %w", r.Name, err)
		}
		out = append(out, hr)
	}
	return out, nil
}

func destinations(r plan.Route, t target) ([]*networking.HTTPRouteDestination, error) {
	out := make([]*networking.HTTPRouteDestination, 0, len(r.Destinations))
	for _, d := range r.Destinations {
		rd := &networking.HTTPRouteDestination{Destination: t.destination(d.Subset), Weight: d.Weight}
		if c, ok := affinityCookie(r, d, t.canaryRevision); ok {
			// add, not set: the service's own Set-Cookie headers must survive.
			rd.Headers = &networking.Headers{Response: &networking.Headers_HeaderOperations{Add: map[string]string{"set-cookie": c}}}
		}
		out = append(out, rd)
	}
	return out, nil
}

// Istio applies a route's weights before any consistent hash of the
// destination (istio#9764), so the ring Sluice's xDS uses cannot be
// written as a VirtualService. What a VirtualService can do is mark: the
// canary's share of a weighted route with cookie affinity answers with
// the affinity cookie set to the canary revision, and a route ahead of
// the weights sends requests carrying it to the canary. A user drawn for
// the canary stays there until promotion or abort; a user drawn for
// stable is drawn again at the next request, so the canary gains users as
// the rollout goes on (never loses them). Header affinity has no such
// marker: a response header is not sent back by a client on its own.

// withAffinityMarker puts the marker route before the first route with
// cookie affinity that splits between stable and canary.
func withAffinityMarker(routes []plan.Route, canaryRevision string) []plan.Route {
	for i, r := range routes {
		if r.Affinity == nil || r.Affinity.Cookie == "" || !splits(r) {
			continue
		}
		marker := plan.Route{
			Name:         "affinity",
			Match:        []plan.Match{{Cookies: []plan.CookieMatch{{Name: r.Affinity.Cookie, Value: canaryRevision}}}},
			Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}},
			Policy:       r.Policy,
		}
		return slices.Insert(slices.Clone(routes), i, marker)
	}
	return routes
}

// splits reports whether a route sends some but not all of its requests
// to the canary.
func splits(r plan.Route) bool {
	for _, d := range r.Destinations {
		if d.Subset == plan.Canary {
			return d.Weight > 0 && d.Weight < 100
		}
	}
	return false
}

// affinityCookie is the Set-Cookie value the canary destination d of r
// adds, if any. Path=/ makes the marker reach every route of the host.
func affinityCookie(r plan.Route, d plan.Destination, canaryRevision string) (string, bool) {
	a := r.Affinity
	if a == nil || a.Cookie == "" || d.Subset != plan.Canary || !splits(r) {
		return "", false
	}
	v := a.Cookie + "=" + canaryRevision + "; Path=/"
	if a.CookieTTL > 0 {
		v += "; Max-Age=" + strconv.FormatInt(int64((a.CookieTTL+time.Second-1)/time.Second), 10)
	}
	return v, true
}

// setMirror uses mirror + mirrorPercentage, or appends to mirrors when Git
// already declares that list: Istio refuses both forms on one route.
func setMirror(hr *networking.HTTPRoute, m *plan.Mirror, t target) {
	pct := &networking.Percent{Value: float64(m.Percent)}
	if len(hr.Mirrors) > 0 {
		hr.Mirrors = append(hr.Mirrors, &networking.HTTPMirrorPolicy{Destination: t.destination(m.Subset), Percentage: pct})
		return
	}
	hr.Mirror = t.destination(m.Subset)
	hr.MirrorPercentage = pct
}

// setPolicy overrides, field by field, what the plan sets; what it leaves
// unset stays as Git declares it on the route.
func setPolicy(hr *networking.HTTPRoute, p *plan.Policy) error {
	if p == nil {
		return nil
	}
	if p.Timeout > 0 {
		hr.Timeout = durationpb.New(p.Timeout)
	}
	if r := p.Retries; r != nil {
		hr.Retries = &networking.HTTPRetry{Attempts: r.Attempts, RetryOn: r.RetryOn}
		if r.PerTryTimeout > 0 {
			hr.Retries.PerTryTimeout = durationpb.New(r.PerTryTimeout)
		}
	}
	if f := p.Fault; f != nil {
		fi, err := fault(f)
		if err != nil {
			return err
		}
		hr.Fault = fi
	}
	return nil
}

func fault(f *plan.Fault) (*networking.HTTPFaultInjection, error) {
	out := &networking.HTTPFaultInjection{}
	if a := f.Abort; a != nil {
		ab := &networking.HTTPFaultInjection_Abort{Percentage: &networking.Percent{Value: float64(a.Percent)}}
		switch {
		case a.HTTPStatus != 0:
			ab.ErrorType = &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: a.HTTPStatus}
		default:
			// Istio takes the code's name ("UNAVAILABLE"), not its number.
			n, ok := code.Code_name[a.GRPCStatus]
			if !ok {
				return nil, fmt.Errorf("fault abort: unknown gRPC status %d", a.GRPCStatus)
			}
			ab.ErrorType = &networking.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: n}
		}
		out.Abort = ab
	}
	if d := f.Delay; d != nil {
		out.Delay = &networking.HTTPFaultInjection_Delay{
			HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(d.Delay)},
			Percentage:    &networking.Percent{Value: float64(d.Percent)},
		}
	}
	return out, nil
}

// narrow returns the matches that hold when one of the stub's matches and
// one of the plan's hold. An empty stub list matches everything.
func narrow(stub []*networking.HTTPMatchRequest, pm []plan.Match) ([]*networking.HTTPMatchRequest, error) {
	converted := make([]*networking.HTTPMatchRequest, 0, len(pm))
	for _, m := range pm {
		c, err := match(m)
		if err != nil {
			return nil, err
		}
		converted = append(converted, c)
	}
	if len(stub) == 0 {
		return converted, nil
	}
	var out []*networking.HTTPMatchRequest
	for _, s := range stub {
		for _, c := range converted {
			both, ok, err := conjoin(s, c)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, both)
			}
		}
	}
	return out, nil
}

func match(m plan.Match) (*networking.HTTPMatchRequest, error) {
	out := &networking.HTTPMatchRequest{}
	put := func(into *map[string]*networking.StringMatch, name string, sm *networking.StringMatch) error {
		if *into == nil {
			*into = map[string]*networking.StringMatch{}
		}
		if _, dup := (*into)[name]; dup {
			// Istio holds one condition per header name.
			return fmt.Errorf("two conditions on header %q in one match", name)
		}
		(*into)[name] = sm
		return nil
	}
	for _, h := range m.Headers {
		name := strings.ToLower(h.Name)
		var err error
		switch h.Kind {
		case plan.HeaderExact:
			err = put(&out.Headers, name, exact(h.Value))
		case plan.HeaderPrefix:
			err = put(&out.Headers, name, &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: h.Value}})
		case plan.HeaderRegex:
			err = put(&out.Headers, name, regex(h.Value))
		case plan.HeaderPresent:
			// An empty StringMatch is Istio's presence check.
			err = put(&out.Headers, name, &networking.StringMatch{})
		case plan.HeaderAbsent:
			err = put(&out.WithoutHeaders, name, &networking.StringMatch{})
		default:
			err = fmt.Errorf("header %q: unknown match kind %q", name, h.Kind)
		}
		if err != nil {
			return nil, err
		}
	}
	if u := m.URI; u != nil {
		if u.Prefix {
			out.Uri = &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: u.Value}}
		} else {
			out.Uri = exact(u.Value)
		}
	}
	if len(m.Cookies) > 0 {
		re, err := cookieRegex(m.Cookies)
		if err != nil {
			return nil, err
		}
		if err := put(&out.Headers, "cookie", regex(re)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func exact(v string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: v}}
}

func regex(v string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: v}}
}

// maxCookies bounds the permutations cookieRegex writes (3! = 6).
const maxCookies = 3

// cookieRegex matches a Cookie header that carries every cookie with its
// exact value, in any order. Istio has no cookie match, and Envoy matches
// the regex against the whole header (RE2: no lookahead), so each order is
// an alternative. A cookie starts the header or follows ";" and optional
// spaces, and ends the header or is followed by ";", so "xname=v" and
// "name=vv" do not match name=v.
func cookieRegex(cs []plan.CookieMatch) (string, error) {
	if len(cs) > maxCookies {
		return "", fmt.Errorf("%d cookie conditions in one match; Istio can express at most %d", len(cs), maxCookies)
	}
	pairs := make([]string, len(cs))
	for i, c := range cs {
		pairs[i] = regexp.QuoteMeta(c.Name + "=" + c.Value)
	}
	var alts []string
	for _, p := range permutations(pairs) {
		alts = append(alts, `(?:.*;)?\s*`+strings.Join(p, `;(?:.*;)?\s*`)+`(?:;.*)?`)
	}
	if len(alts) == 1 {
		return "^" + alts[0] + "$", nil
	}
	return "^(?:" + strings.Join(alts, "|") + ")$", nil
}

func permutations(s []string) [][]string {
	if len(s) <= 1 {
		return [][]string{slices.Clone(s)}
	}
	var out [][]string
	for i := range s {
		rest := slices.Concat(s[:i], s[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]string{s[i]}, p...))
		}
	}
	return out
}

// conjoin is the match that holds when both a (from Git) and b (from the
// plan) hold. ok is false when no request satisfies both (two different
// paths); err when both hold but Istio cannot say so in one match.
func conjoin(a, b *networking.HTTPMatchRequest) (*networking.HTTPMatchRequest, bool, error) {
	out := proto.Clone(a).(*networking.HTTPMatchRequest)
	merge := func(into *map[string]*networking.StringMatch, from map[string]*networking.StringMatch, what string) error {
		for _, k := range sortedKeys(from) {
			v := from[k]
			if have, ok := (*into)[k]; ok {
				if proto.Equal(have, v) {
					continue
				}
				return fmt.Errorf("%s %q is matched both by the VirtualService route and by the plan", what, k)
			}
			if *into == nil {
				*into = map[string]*networking.StringMatch{}
			}
			(*into)[k] = proto.Clone(v).(*networking.StringMatch)
		}
		return nil
	}
	if err := merge(&out.Headers, b.Headers, "header"); err != nil {
		return nil, false, err
	}
	if err := merge(&out.WithoutHeaders, b.WithoutHeaders, "header"); err != nil {
		return nil, false, err
	}
	for k := range out.Headers {
		if _, ok := out.WithoutHeaders[k]; ok && isPresence(out.WithoutHeaders[k]) {
			// Required and forbidden at once.
			return nil, false, nil
		}
	}
	uri, ok, err := conjoinURI(a.Uri, b.Uri)
	if err != nil || !ok {
		return nil, ok, err
	}
	out.Uri = uri
	return out, true, nil
}

func isPresence(m *networking.StringMatch) bool { return m.GetMatchType() == nil }

func conjoinURI(a, b *networking.StringMatch) (*networking.StringMatch, bool, error) {
	switch {
	case b == nil:
		return a, true, nil
	case a == nil:
		return proto.Clone(b).(*networking.StringMatch), true, nil
	case proto.Equal(a, b):
		return a, true, nil
	case a.GetRegex() != "" || b.GetRegex() != "":
		return nil, false, fmt.Errorf("cannot narrow uri %v to %v: Istio has one uri condition per match", a, b)
	}
	// Both are exact or prefix, and they differ.
	ae, be := a.GetExact(), b.GetExact()
	ap, bp := a.GetPrefix(), b.GetPrefix()
	switch {
	case isExact(a) && isExact(b):
		return nil, false, nil
	case isExact(a) && strings.HasPrefix(ae, bp):
		return a, true, nil
	case isExact(b) && strings.HasPrefix(be, ap):
		return proto.Clone(b).(*networking.StringMatch), true, nil
	case !isExact(a) && !isExact(b) && strings.HasPrefix(ap, bp):
		return a, true, nil
	case !isExact(a) && !isExact(b) && strings.HasPrefix(bp, ap):
		return proto.Clone(b).(*networking.StringMatch), true, nil
	}
	return nil, false, nil
}

func isExact(m *networking.StringMatch) bool {
	_, ok := m.GetMatchType().(*networking.StringMatch_Exact)
	return ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
