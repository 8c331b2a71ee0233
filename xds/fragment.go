package xds

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/sluicehq/sluice/rollout/plan"
)

// A publish translates only the plans that changed.
//
// A controller's wave publishes the whole set once per changed plan, and
// translating, validating and hashing every plan each time made a wave of
// N plans O(N²) in CPU. A plan's translation depends on the plan (its
// version is its content hash), the endpoints of its revisions and what
// the previous publish served its service (retain.go); when all three are
// as they were, the previous publish's resources for it are taken again,
// the very same objects, so their hashes are known too (buildBase). Only
// what all services share is built anew: Envoy's listener and route
// configuration per port.
//
// Reused resources are shared between snapshots, which never modify
// them; nothing modifies a resource once a publish has translated it.

// fragment is one plan's share of a translation.
type fragment struct {
	version string
	// eps are the endpoints read for each revision.
	eps map[string][]Endpoint
	// prev is what the publish before served the service (the input of
	// keep); served is what this translation serves it.
	prev, served *served

	clusters  [len(groups)][]*clusterv3.Cluster
	endpoints [len(groups)][]*endpointv3.ClusterLoadAssignment
	listeners []*listenerv3.Listener // gRPC's
	hosts     []envoyHost
	// owners are the plan's owners; infos[g][i] is the ownerInfo group g
	// holds for owners[i] (nil: none). Slices beside owners, not a map
	// per fragment and group: a map of two entries costs a few hundred
	// bytes, and the old and new translations of a wave hold four per
	// service.
	owners []ownerKey
	infos  [len(groups)][]*ownerInfo
}

// envoyHost is one host's virtual host on an Envoy port.
type envoyHost struct {
	port uint32
	vh   *routev3.VirtualHost
	used []string
}

func groupIndex(g Group) int { return slices.Index(groups[:], g) }

// reusable returns the fragment the previous translation made for p if
// it is still p's translation: same version, same endpoints, same input
// from the publish before.
func (t *translator) reusable(p *plan.Plan, eps EndpointSource) (*fragment, error) {
	key := PlanKey(p)
	f := t.cache[key]
	if f == nil || f.version != p.Version {
		return nil, nil
	}
	if prev := t.prev[key]; prev != f.served && prev != f.prev {
		return nil, nil
	}
	for _, s := range p.Subsets {
		found, err := eps.Endpoints(p.Namespace, p.Service, s.Revision)
		if err != nil {
			return nil, err
		}
		if had, ok := f.eps[s.Revision]; !ok || !slices.Equal(had, found) {
			return nil, nil
		}
	}
	return f, nil
}

// replay adds a fragment to the translation, as translating its plan
// again would.
func (t *translator) replay(key string, f *fragment) {
	for _, g := range groups {
		i, r := groupIndex(g), t.out.Group(g)
		r.Clusters = append(r.Clusters, f.clusters[i]...)
		r.Endpoints = append(r.Endpoints, f.endpoints[i]...)
		for j, info := range f.infos[i] {
			if info != nil {
				r.owners[f.owners[j]] = info
			}
		}
	}
	t.out.GRPC.Listeners = append(t.out.GRPC.Listeners, f.listeners...)
	for _, h := range f.hosts {
		t.addEnvoyHost(f.version, h, hostOwner(h.vh.GetName()), f.owners[0])
	}
	for _, o := range f.owners {
		// Complete already: envoyListeners must not change them.
		t.replayed[o] = true
	}
	t.out.served[key] = f.served
	t.frags[key] = f
}

// record translates p, noting its share of the output as a fragment.
func (t *translator) record(p *plan.Plan, eps EndpointSource) error {
	key := PlanKey(p)
	f := &fragment{version: p.Version, eps: map[string][]Endpoint{}, prev: t.prev[key]}
	var start [len(groups)][2]int
	for _, g := range groups {
		r := t.out.Group(g)
		start[groupIndex(g)] = [2]int{len(r.Clusters), len(r.Endpoints)}
	}
	listeners := len(t.out.GRPC.Listeners)
	t.cur = f
	err := t.plan(p, eps)
	t.cur = nil
	if err != nil {
		return err
	}
	for _, g := range groups {
		i, r := groupIndex(g), t.out.Group(g)
		// Copies: the translation sorts its lists in place.
		f.clusters[i] = slices.Clone(r.Clusters[start[i][0]:])
		f.endpoints[i] = slices.Clone(r.Endpoints[start[i][1]:])
	}
	f.listeners = slices.Clone(t.out.GRPC.Listeners[listeners:])
	f.owners = []ownerKey{serviceOwner(key)}
	for _, h := range p.Hosts {
		f.owners = append(f.owners, hostOwner(h.Name))
	}
	f.served = t.out.served[key]
	t.frags[key] = f
	return nil
}

// finish notes each recorded fragment's owner infos, once the Envoy
// listeners have completed them. An info whose resources and closures are
// those the plan's previous translation had (a step that only moved
// weights) takes that translation's lists, read-only from now on, so
// that the old and new translations and the tracker's history share them.
func (t *translator) finish() {
	for key, f := range t.frags {
		if f.infos[0] != nil {
			continue // replayed
		}
		prev := t.cache[key]
		for _, g := range groups {
			i, r := groupIndex(g), t.out.Group(g)
			f.infos[i] = make([]*ownerInfo, len(f.owners))
			for j, o := range f.owners {
				info := r.owners[o]
				if info == nil {
					continue
				}
				if old := prev.info(i, o); old != nil {
					info.shareLists(old)
				}
				f.infos[i][j] = info
			}
		}
	}
}

// info is the ownerInfo group index i holds for owner o in the fragment,
// or nil.
func (f *fragment) info(i int, o ownerKey) *ownerInfo {
	if f == nil {
		return nil
	}
	if j := slices.Index(f.owners, o); j >= 0 && j < len(f.infos[i]) {
		return f.infos[i][j]
	}
	return nil
}

// unchangedCluster returns the cluster and load assignment the previous
// translation of p's service made for a revision, if the revision's
// endpoints are the same. A revision's cluster depends on nothing else
// (its name is the revision's), so a plan that only moves weights, as
// every step of a canary does, takes the very objects the previous
// publish serves instead of building equal ones: a wave of changed plans
// holds each cluster once, not once in the old translation and once in
// the new, and needs no validating and hashing of them (buildBase).
func (t *translator) unchangedCluster(p *plan.Plan, name, revision string, found []Endpoint) (keptCluster, bool) {
	f := t.cache[PlanKey(p)]
	// The affinity cluster depends on the weights too; a revision named
	// like it must not take it.
	if f == nil || f.served == nil || name == affinityClusterName(p) {
		return keptCluster{}, false
	}
	if had, ok := f.eps[revision]; !ok || !slices.Equal(had, found) {
		return keptCluster{}, false
	}
	i := slices.IndexFunc(f.served.made, func(c keptCluster) bool { return c.name() == name })
	if i < 0 {
		return keptCluster{}, false
	}
	return f.served.made[i], true
}
