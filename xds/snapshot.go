package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// kindURL and kindType map a kind to its type URL and to go-control-plane's
// snapshot slot.
var (
	kindURL = [numKinds]string{
		kindListener: resourcev3.ListenerType,
		kindRoute:    resourcev3.RouteType,
		kindCluster:  resourcev3.ClusterType,
		kindEndpoint: resourcev3.EndpointType,
	}
	kindType = [numKinds]types.ResponseType{
		kindListener: types.Listener,
		kindRoute:    types.Route,
		kindCluster:  types.Cluster,
		kindEndpoint: types.Endpoint,
	}
	kindName = [numKinds]string{"listener", "route", "cluster", "endpoint"}
)

func kindOf(typeURL string) (kind, bool) {
	i := slices.Index(kindURL[:], typeURL)
	return kind(i), i >= 0
}

// generation is one group's snapshot as the tracker remembers it: the type
// versions, each resource's content hash, and whose plan version it holds.
type generation struct {
	group Group
	// view is the key of the scope it was cut for (allView: everything).
	view     string
	versions [numKinds]string
	hashes   [numKinds]map[string]string
	owners   map[ownerKey]*ownerInfo
}

// key is the snapshot the generation belongs to.
func (g *generation) key() snapKey { return snapKey{g.group, g.view} }

// sameAs reports whether two generations serve the same content for the
// same plan versions, so republishing one would push nothing.
func (g *generation) sameAs(o *generation) bool {
	if o == nil || g.versions != o.versions || len(g.owners) != len(o.owners) {
		return false
	}
	for k, v := range g.owners {
		if ov, ok := o.owners[k]; !ok || ov.planVersion != v.planVersion {
			return false
		}
	}
	return true
}

// buildSnapshot validates every resource, versions each type by a content
// hash, assembles the snapshot and checks its consistency. Any failure
// returns an error and nothing else, so the caller keeps the previous
// snapshot.
func buildSnapshot(g Group, r *GroupResources) (*cachev3.Snapshot, *generation, error) {
	b, err := buildBase(g, r, nil, nil, map[types.Resource]string{})
	if err != nil {
		return nil, nil, err
	}
	return b.assemble(allView, b.lists, b.hashes, b.owners)
}

// base is one group's complete translation, validated and hashed once per
// publish; every view of the group is cut from it (authz_view.go).
type base struct {
	group  Group
	lists  [numKinds][]types.Resource
	hashes [numKinds]map[string]string
	owners map[ownerKey]*ownerInfo
	// services names each owner's service, to decide who may see it.
	services map[ownerKey]serviceRef
}

// buildBase validates and hashes every resource of a group. prev and
// checked map resources validated and hashed before to their hashes, by
// the resource itself: prev the last publish's (the next publish reuses
// the resources of unchanged plans, fragment.go), checked this one's, so
// far (both groups share clusters and load assignments, retain.go).
// Those are taken as they are; every resource and its hash is added to
// checked.
func buildBase(g Group, r *GroupResources, services map[ownerKey]serviceRef, prev, checked map[types.Resource]string) (*base, error) {
	b := &base{group: g, owners: r.owners, services: services}
	// Sized once: each list is kept with the base until the next publish.
	b.lists[kindListener] = make([]types.Resource, 0, len(r.Listeners))
	b.lists[kindRoute] = make([]types.Resource, 0, len(r.Routes))
	b.lists[kindCluster] = make([]types.Resource, 0, len(r.Clusters))
	b.lists[kindEndpoint] = make([]types.Resource, 0, len(r.Endpoints))
	for _, l := range r.Listeners {
		b.lists[kindListener] = append(b.lists[kindListener], l)
	}
	for _, rc := range r.Routes {
		b.lists[kindRoute] = append(b.lists[kindRoute], rc)
	}
	for _, c := range r.Clusters {
		b.lists[kindCluster] = append(b.lists[kindCluster], c)
	}
	for _, e := range r.Endpoints {
		b.lists[kindEndpoint] = append(b.lists[kindEndpoint], e)
	}
	for k := range numKinds {
		hashes := make(map[string]string, len(b.lists[k]))
		for _, res := range b.lists[k] {
			name := cachev3.GetResourceName(res)
			if name == "" {
				return nil, fmt.Errorf("%s snapshot: %s without a name", g, kindName[k])
			}
			if _, dup := hashes[name]; dup {
				return nil, fmt.Errorf("%s snapshot: two %ss named %q", g, kindName[k], name)
			}
			h, ok := checked[res]
			if !ok {
				h, ok = prev[res]
			}
			if !ok {
				var err error
				if h, err = checkedHash(res); err != nil {
					return nil, fmt.Errorf("%s snapshot: %s %q: %w", g, kindName[k], name, err)
				}
			}
			hashes[name] = h
			checked[res] = h
		}
		b.hashes[k] = hashes
	}
	return b, nil
}

// checkedHash validates a resource and returns its content hash.
func checkedHash(res types.Resource) (string, error) {
	v, ok := res.(validator)
	if !ok {
		return "", errors.New("cannot be validated")
	}
	if err := v.Validate(); err != nil {
		return "", err
	}
	return resourceHash(res)
}

// assemble versions each type of a view's resources by their hashes,
// builds the snapshot and checks its consistency.
func (b *base) assemble(view string, lists [numKinds][]types.Resource, hashes [numKinds]map[string]string, owners map[ownerKey]*ownerInfo) (*cachev3.Snapshot, *generation, error) {
	snap := &cachev3.Snapshot{}
	gen := &generation{group: b.group, view: view, owners: owners, hashes: hashes}
	for k := range numKinds {
		gen.versions[k] = typeVersion(hashes[k])
		snap.Resources[kindType[k]] = cachev3.NewResources(gen.versions[k], lists[k])
	}
	if err := snap.Consistent(); err != nil {
		return nil, nil, fmt.Errorf("%s snapshot: inconsistent: %w", b.group, err)
	}
	return snap, gen, nil
}

// resourceHash is the hash go-control-plane itself gives a resource in
// delta xDS, so the versions delta clients report (initial versions on
// reconnect, per-resource versions in responses) compare directly.
func resourceHash(res types.Resource) (string, error) {
	b, err := cachev3.MarshalResource(res)
	if err != nil {
		return "", fmt.Errorf("marshal: %w", err)
	}
	return cachev3.HashResource(b), nil
}

// typeVersion hashes a type's names and resource hashes. Unchanged content
// keeps its version, so go-control-plane pushes nothing for it.
func typeVersion(hashes map[string]string) string {
	names := make([]string, 0, len(hashes))
	for n := range hashes {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(hashes[n]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
