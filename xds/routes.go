package xds

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicehq/sluice/rollout/plan"
)

// DefaultRetryOn is used when a plan asks for retries without saying on
// what. It is Istio's default: failures where the request certainly did
// not reach the application, plus 503. gRPC clients understand the
// "unavailable" and "cancelled" parts and ignore the rest.
const DefaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

// buildRoutes converts a host's plan routes for one group. A plan route
// with several alternative matches becomes one Envoy route per
// alternative, in order, all with the same action. It also returns the
// clusters a client of these routes needs: for gRPC those with a positive
// weight, for Envoy all, including mirrors. kept are the clusters the
// service keeps from its previous plan version (retain.go); gRPC's
// keep-warm route names them too.
func buildRoutes(g Group, h plan.Host, clusterOf map[string]string, kept []string) ([]*routev3.Route, []string, error) {
	var out []*routev3.Route
	var used, all []string
	for _, r := range h.Routes {
		action, clusters, referenced, err := routeAction(g, r, clusterOf)
		if err != nil {
			return nil, nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		for _, c := range clusters {
			if !slices.Contains(used, c) {
				used = append(used, c)
			}
		}
		for _, c := range referenced {
			if !slices.Contains(all, c) {
				all = append(all, c)
			}
		}
		perFilter, err := faultOverride(g, r.Policy)
		if err != nil {
			return nil, nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		matches := r.Match
		if len(matches) == 0 {
			matches = []plan.Match{{}}
		}
		for i, m := range matches {
			rm, err := routeMatch(m)
			if err != nil {
				return nil, nil, fmt.Errorf("route %q match %d: %w", r.Name, i, err)
			}
			name := r.Name
			if len(matches) > 1 {
				name += "." + strconv.Itoa(i)
			}
			out = append(out, &routev3.Route{
				Name:                 name,
				Match:                rm,
				Action:               &routev3.Route_Route{Route: action},
				TypedPerFilterConfig: perFilter,
			})
		}
	}
	for _, c := range kept {
		if !slices.Contains(all, c) {
			all = append(all, c)
		}
	}
	if g == GroupGRPC && len(all) > 1 {
		// Inserted before the catch-all, so the catch-all stays last.
		out = slices.Insert(out, len(out)-1, keepWarmRoute(all))
		used = all
	}
	return out, used, nil
}

// KeepWarmRoute names the route that keeps every cluster of a service
// referenced in a gRPC client's configuration.
const KeepWarmRoute = "sluice-keep-warm"

// keepWarmRoute never matches (a header that must be both present and
// absent) but names every cluster of the host: those its routes name and
// those the service keeps from its previous plan version (retain.go).
// gRPC drops a cluster from its configuration when no route gives it
// weight, and when a later weight brings it back, grpc-go installs the new
// route table before its load balancer has the cluster: RPCs picked for it
// in that moment fail with "unknown cluster selected for RPC". Referenced
// here, the clusters stay in the balancer (connected, like Envoy's
// clusters from CDS) through every weight change, 0% and 100% included.
func keepWarmRoute(clusters []string) *routev3.Route {
	const h = "x-sluice-keep-warm"
	wc := &routev3.WeightedCluster{}
	for _, c := range clusters {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(1)})
	}
	return &routev3.Route{
		Name: KeepWarmRoute,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers: []*routev3.HeaderMatcher{
				{Name: h, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
				{Name: h, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true},
			},
		},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
		}},
	}
}

func routeMatch(m plan.Match) (*routev3.RouteMatch, error) {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if u := m.URI; u != nil {
		switch {
		case !strings.HasPrefix(u.Value, "/"):
			return nil, fmt.Errorf("uri %q: must start with /", u.Value)
		case u.Prefix:
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Value}
		default:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Value}
		}
	}
	for _, h := range m.Headers {
		hm, err := headerMatcher(h)
		if err != nil {
			return nil, err
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, c := range m.Cookies {
		if c.Name == "" {
			return nil, fmt.Errorf("cookie without a name")
		}
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name: "cookie",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: cookieRegex(c)}},
			}},
		})
	}
	return rm, nil
}

// cookieRegex matches a Cookie header that carries name=value among its
// pairs. Safe regexes must match the whole header value (Envoy and gRPC
// both anchor them), hence the optional leading and trailing pairs.
func cookieRegex(c plan.CookieMatch) string {
	return `(?:.*;\s*)?` + regexp.QuoteMeta(c.Name) + `=` + regexp.QuoteMeta(c.Value) + `(?:;.*)?`
}

func headerMatcher(h plan.HeaderMatch) (*routev3.HeaderMatcher, error) {
	// gRPC metadata keys are lower case and Envoy compares header names
	// case-insensitively, so a lower-case name means the same to both; an
	// upper-case name would never match in gRPC.
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(h.Name)}
	str := func(m *matcherv3.StringMatcher) *routev3.HeaderMatcher_StringMatch {
		return &routev3.HeaderMatcher_StringMatch{StringMatch: m}
	}
	switch h.Kind {
	case plan.HeaderExact:
		hm.HeaderMatchSpecifier = str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value}})
	case plan.HeaderPrefix:
		if h.Value == "" {
			return nil, fmt.Errorf("header %q: empty prefix", h.Name)
		}
		hm.HeaderMatchSpecifier = str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Value}})
	case plan.HeaderRegex:
		// Go's regexp implements RE2's syntax, so compiling here catches
		// what Envoy and gRPC would otherwise NACK.
		if _, err := regexp.Compile(h.Value); err != nil {
			return nil, fmt.Errorf("header %q: regex: %w", h.Name, err)
		}
		hm.HeaderMatchSpecifier = str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}}})
	case plan.HeaderPresent:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case plan.HeaderAbsent:
		// present + invert rather than present_match=false, whose meaning
		// changed between Envoy versions; gRPC supports invert_match too.
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		hm.InvertMatch = true
	default:
		return nil, fmt.Errorf("header %q: unknown match kind %q", h.Name, h.Kind)
	}
	return hm, nil
}

// routeAction renders destinations, affinity, mirror and policy. Proxyless
// gRPC gets what it implements: no mirror, and the timeout as
// max_stream_duration, the field gRPC reads (gRFC A31), instead of Envoy's
// route timeout.
//
// referenced lists every cluster the route may send to as weights change:
// its destinations' clusters at any weight and, with affinity, the ring.
func routeAction(g Group, r plan.Route, clusterOf map[string]string) (a *routev3.RouteAction, used, referenced []string, err error) {
	wc := &routev3.WeightedCluster{}
	for _, d := range r.Destinations {
		name, ok := clusterOf[d.Subset]
		if !ok {
			return nil, nil, nil, fmt.Errorf("destination subset %q not declared", d.Subset)
		}
		// Two subsets on one revision land in one cluster entry: Envoy
		// and gRPC would otherwise see the same cluster twice.
		i := slices.IndexFunc(wc.Clusters, func(c *routev3.WeightedCluster_ClusterWeight) bool { return c.GetName() == name })
		if i < 0 {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(0)})
			i = len(wc.Clusters) - 1
		}
		cw := wc.Clusters[i]
		cw.Weight = wrapperspb.UInt32(cw.GetWeight().GetValue() + uint32(d.Weight))
	}
	positive := 0
	for _, c := range wc.Clusters {
		referenced = append(referenced, c.GetName())
		if c.GetWeight().GetValue() > 0 {
			positive++
		}
	}
	a = &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}
	if r.Affinity != nil {
		ring, ok := clusterOf[affinityKey]
		if !ok {
			return nil, nil, nil, fmt.Errorf("affinity route without an affinity cluster")
		}
		referenced = append(referenced, ring)
		// With one destination taking everything there is nothing to pin;
		// the ring stays referenced (kept warm for gRPC) for the next split.
		if positive > 1 {
			hp, err := hashPolicy(r.Affinity)
			if err != nil {
				return nil, nil, nil, err
			}
			wc = &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: ring, Weight: wrapperspb.UInt32(100)}}}
			a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
			a.HashPolicy = hp
		}
	}
	for _, c := range wc.Clusters {
		// gRPC ignores (and never asks for) a cluster at weight 0; Envoy
		// gets every cluster anyway. used is what a client of this route
		// must have applied.
		if g == GroupEnvoy || c.GetWeight().GetValue() > 0 {
			used = append(used, c.GetName())
		}
	}
	if g == GroupEnvoy {
		// Envoy's default route timeout (15s) would cut long gRPC streams
		// and long polls; like Istio, no timeout unless the user set one.
		a.Timeout = durationpb.New(0)
	}
	if m := r.Mirror; m != nil && g == GroupEnvoy {
		name, ok := clusterOf[m.Subset]
		if !ok {
			return nil, nil, nil, fmt.Errorf("mirror subset %q not declared", m.Subset)
		}
		if !slices.Contains(used, name) {
			used = append(used, name)
		}
		a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
			Cluster: name,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{
				DefaultValue: percent(m.Percent),
			},
		}}
	}
	if p := r.Policy; p != nil {
		if p.Timeout < 0 {
			return nil, nil, nil, fmt.Errorf("negative timeout %s", p.Timeout)
		}
		if p.Timeout > 0 {
			if g == GroupEnvoy {
				a.Timeout = durationpb.New(p.Timeout)
			} else {
				a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(p.Timeout)}
			}
		}
		rp, err := retryPolicy(g, p.Retries)
		if err != nil {
			return nil, nil, nil, err
		}
		a.RetryPolicy = rp
	}
	return a, used, referenced, nil
}

func retryPolicy(g Group, r *plan.Retries) (*routev3.RetryPolicy, error) {
	if r == nil || r.Attempts == 0 {
		// gRPC NACKs num_retries 0, and zero attempts means no retries.
		return nil, nil
	}
	if r.Attempts < 0 {
		return nil, fmt.Errorf("retry attempts %d < 0", r.Attempts)
	}
	rp := &routev3.RetryPolicy{RetryOn: r.RetryOn, NumRetries: wrapperspb.UInt32(uint32(r.Attempts))}
	if rp.RetryOn == "" {
		rp.RetryOn = DefaultRetryOn
		if g == GroupEnvoy {
			rp.RetriableStatusCodes = []uint32{503}
		}
	}
	// gRPC has no per-try timeout (it ignores the field); leaving it out
	// keeps the gRPC resources honest about what is in force.
	if r.PerTryTimeout > 0 && g == GroupEnvoy {
		rp.PerTryTimeout = durationpb.New(r.PerTryTimeout)
	}
	return rp, nil
}

// faultOverride is the per-route configuration of the fault filter. Both
// Envoy and gRPC (gRFC A33) read it under the filter's name. An abort with
// both statuses gives Envoy the HTTP one (Envoy maps it for gRPC callers)
// and gRPC the gRPC one; with one status, both get it.
func faultOverride(g Group, p *plan.Policy) (map[string]*anypb.Any, error) {
	if p == nil || p.Fault == nil {
		return nil, nil
	}
	f := &faultv3.HTTPFault{}
	if a := p.Fault.Abort; a != nil {
		fa := &faultv3.FaultAbort{Percentage: percent(a.Percent)}
		switch {
		case a.HTTPStatus != 0 && a.GRPCStatus > 0 && g == GroupGRPC:
			fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(a.GRPCStatus)}
		case a.HTTPStatus != 0:
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(a.HTTPStatus)}
		case a.GRPCStatus > 0:
			fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(a.GRPCStatus)}
		default:
			return nil, fmt.Errorf("fault abort without a status")
		}
		f.Abort = fa
	}
	if d := p.Fault.Delay; d != nil {
		if d.Delay <= 0 {
			return nil, fmt.Errorf("fault delay %s: must be positive", d.Delay)
		}
		f.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.Delay)},
			Percentage:         percent(d.Percent),
		}
	}
	if f.Abort == nil && f.Delay == nil {
		return nil, nil
	}
	cfg, err := pack(f)
	if err != nil {
		return nil, fmt.Errorf("fault: %w", err)
	}
	return map[string]*anypb.Any{wellknown.Fault: cfg}, nil
}

func percent(p int32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(max(p, 0)), Denominator: typev3.FractionalPercent_HUNDRED}
}
