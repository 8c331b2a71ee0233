package xds

import (
	"crypto/sha256"
	"encoding/hex"
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
	group    Group
	versions [numKinds]string
	hashes   [numKinds]map[string]string
	owners   map[ownerKey]*ownerInfo
}

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
	lists := [numKinds][]types.Resource{}
	for _, l := range r.Listeners {
		lists[kindListener] = append(lists[kindListener], l)
	}
	for _, rc := range r.Routes {
		lists[kindRoute] = append(lists[kindRoute], rc)
	}
	for _, c := range r.Clusters {
		lists[kindCluster] = append(lists[kindCluster], c)
	}
	for _, e := range r.Endpoints {
		lists[kindEndpoint] = append(lists[kindEndpoint], e)
	}
	snap := &cachev3.Snapshot{}
	gen := &generation{group: g, owners: r.owners}
	for k := range numKinds {
		hashes := make(map[string]string, len(lists[k]))
		for _, res := range lists[k] {
			name := cachev3.GetResourceName(res)
			if name == "" {
				return nil, nil, fmt.Errorf("%s snapshot: %s without a name", g, kindName[k])
			}
			if _, dup := hashes[name]; dup {
				return nil, nil, fmt.Errorf("%s snapshot: two %ss named %q", g, kindName[k], name)
			}
			v, ok := res.(validator)
			if !ok {
				return nil, nil, fmt.Errorf("%s snapshot: %s %q cannot be validated", g, kindName[k], name)
			}
			if err := v.Validate(); err != nil {
				return nil, nil, fmt.Errorf("%s snapshot: %s %q: %w", g, kindName[k], name, err)
			}
			h, err := resourceHash(res)
			if err != nil {
				return nil, nil, fmt.Errorf("%s snapshot: %s %q: %w", g, kindName[k], name, err)
			}
			hashes[name] = h
		}
		gen.hashes[k] = hashes
		gen.versions[k] = typeVersion(hashes)
		snap.Resources[kindType[k]] = cachev3.NewResources(gen.versions[k], lists[k])
	}
	if err := snap.Consistent(); err != nil {
		return nil, nil, fmt.Errorf("%s snapshot: inconsistent: %w", g, err)
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
