package xds

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicehq/sluice/rollout/plan"
)

// Session affinity is a consistent-hash ring over both revisions' endpoints.
//
// Envoy and grpc-go (gRFC A42) build a ring-hash ring the same way: each
// endpoint gets scale×weight/Σweights points, hashed from "address_i" for
// i = 0, 1, …; a request's key is hashed and served by the next point on
// the ring. With the ring size pinned (minimum = maximum = ringSize, a power
// of two) and integer endpoint weights summing to ringSize, every endpoint
// gets exactly its weight in points, with no rounding. A revision whose
// weight rises then has a superset of its points and the others a subset,
// so a key can only move to a revision whose weight rose: the canary keeps
// every session it had. Weights apply inside the ring, not before it, which
// is why a weighted route to two sticky clusters (Istio's subsets with
// consistentHash, istio#9764) cannot pin a session across versions.

// ringSize is the ring of every affinity cluster. 4096 is grpc-go's
// default cap (GRPC_RING_HASH_CAP); a larger ring would be cut to it by
// gRPC and no longer match Envoy's. With 4096 points a revision's share of
// the key space is its weight within about ±0.5 percentage point.
const ringSize = 4096

// affinityKey is the clusterOf entry of a plan's affinity cluster; no
// subset can have this name.
const affinityKey = "|affinity"

// affinityClusterName cannot collide with a revision's cluster: "@" is not
// allowed in a revision.
func affinityClusterName(p *plan.Plan) string {
	return PlanKey(p) + "|@affinity"
}

// affinitySplit is the weight per cluster of the plan's affinity routes,
// which must all agree (they are the weighted route and copies of it, such
// as the route carrying a matched fault); nil when the plan has none.
func affinitySplit(p *plan.Plan, clusterOf map[string]string) ([]clusterWeight, error) {
	var split []clusterWeight
	var from string
	for _, h := range p.Hosts {
		for _, r := range h.Routes {
			if r.Affinity == nil {
				continue
			}
			s, err := mergeByCluster(r.Destinations, clusterOf)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r.Name, err)
			}
			if split == nil {
				split, from = s, r.Name
				continue
			}
			if !slices.Equal(split, s) {
				return nil, fmt.Errorf("routes %q and %q both have session affinity but different weights; one service has one affinity split", from, r.Name)
			}
		}
	}
	return split, nil
}

type clusterWeight struct {
	cluster string
	weight  int32
}

// mergeByCluster sums the weights of destinations that land in one
// cluster (two subsets on one revision), keeping first-seen order.
func mergeByCluster(ds []plan.Destination, clusterOf map[string]string) ([]clusterWeight, error) {
	var out []clusterWeight
	for _, d := range ds {
		name, ok := clusterOf[d.Subset]
		if !ok {
			return nil, fmt.Errorf("destination subset %q not declared", d.Subset)
		}
		i := slices.IndexFunc(out, func(c clusterWeight) bool { return c.cluster == name })
		if i < 0 {
			out = append(out, clusterWeight{cluster: name})
			i = len(out) - 1
		}
		out[i].weight += d.Weight
	}
	return out, nil
}

// ringPoints shares ringSize among the clusters in proportion to their
// weights (out of 100) by largest remainder, earlier clusters first on
// ties. Each count is the floor or the ceiling of its exact share, so a
// cluster's count never falls when its weight rises.
func ringPoints(split []clusterWeight) []int {
	var total int32
	for _, c := range split {
		total += c.weight
	}
	points := make([]int, len(split))
	if total <= 0 {
		return points
	}
	type rem struct {
		i    int
		frac int64
	}
	rems := make([]rem, len(split))
	given := 0
	for i, c := range split {
		exact := int64(ringSize) * int64(c.weight)
		points[i] = int(exact / int64(total))
		given += points[i]
		rems[i] = rem{i, exact % int64(total)}
	}
	slices.SortStableFunc(rems, func(a, b rem) int { return cmp.Compare(b.frac, a.frac) })
	for k := 0; given < ringSize; k++ {
		points[rems[k].i]++
		given++
	}
	return points
}

// affinityAssignment places every endpoint of the split's clusters in one
// locality, weighted so that each cluster's endpoints hold its ring points
// between them. Within a cluster the points are dealt in address order, the
// first ones getting one more when they do not divide evenly: as a
// cluster's points rise, none of its endpoints loses any. An endpoint left
// with no point is left out (an EDS weight cannot be zero).
func affinityAssignment(name string, split []clusterWeight, endpoints map[string][]Endpoint) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	loc := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1)}
	weights := map[Endpoint]uint32{}
	var order []Endpoint
	for i, pts := range ringPoints(split) {
		eps := sortedEndpoints(endpoints[split[i].cluster])
		if pts == 0 || len(eps) == 0 {
			continue
		}
		for j, e := range eps {
			w := pts / len(eps)
			if j < pts%len(eps) {
				w++
			}
			if w == 0 {
				continue
			}
			if _, err := ParseEndpoint(e.String()); err != nil {
				return nil, fmt.Errorf("cluster %s: %w", name, err)
			}
			if _, seen := weights[e]; !seen {
				// Two revisions on one address are one server: gRPC
				// refuses duplicate addresses, so their points add up.
				order = append(order, e)
			}
			weights[e] += uint32(w)
		}
	}
	for _, e := range order {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e)}},
			LoadBalancingWeight: wrapperspb.UInt32(weights[e]),
		})
	}
	if len(loc.LbEndpoints) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	}
	return cla, nil
}

// ringHash turns a cluster into the affinity ring.
func ringHash(c *clusterv3.Cluster) {
	c.LbPolicy = clusterv3.Cluster_RING_HASH
	c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
		MinimumRingSize: wrapperspb.UInt64(ringSize),
		MaximumRingSize: wrapperspb.UInt64(ringSize),
		HashFunction:    clusterv3.Cluster_RingHashLbConfig_XX_HASH,
	}}
}

// hashPolicy is the route's session key. A cookie policy with a TTL (zero
// included) makes Envoy create the cookie when the request has none; gRPC
// ignores cookie policies and hashes such requests at random, which keeps
// the split but pins nothing.
func hashPolicy(a *plan.Affinity) ([]*routev3.RouteAction_HashPolicy, error) {
	switch {
	case a.Header != "" && a.Cookie != "":
		return nil, fmt.Errorf("affinity by both header %q and cookie %q", a.Header, a.Cookie)
	case a.Header != "":
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(a.Header)},
		}}}, nil
	case a.Cookie != "":
		if a.CookieTTL < 0 {
			return nil, fmt.Errorf("affinity cookie %q: negative ttl %s", a.Cookie, a.CookieTTL)
		}
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: a.Cookie, Ttl: durationpb.New(a.CookieTTL), Path: "/"},
		}}}, nil
	}
	return nil, fmt.Errorf("affinity without a header or cookie")
}
