package xds

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluicehq/sluice/rollout/plan"
)

// Views: every distinct scope (authz.go) is one view, and each view has
// one snapshot per client group, cut from the group's complete
// translation. Nodes with equal scopes share it, so ten namespaces make
// ten views whether a thousand nodes or ten thousand connect. A view is
// built when its first node identifies and dropped when its last stream
// closes; the view of everything is always kept, as the reference for
// what is published.

// snapKey names one snapshot: a group's view.
type snapKey struct {
	group Group
	view  string
}

// viewMetadataKey is the node metadata entry the server stamps on every
// request of a stream with the stream's view, overwriting whatever the
// client sent, so the snapshot caches (viewHash) serve the view the
// stream's verified identity allows and nothing the client chose.
const viewMetadataKey = "sluice.dev/view"

// viewHash is the cache.NodeHash of both snapshot caches: each cache
// holds one group, and within it a snapshot per view. A node without the
// server's stamp maps to no snapshot and is served nothing.
type viewHash struct{}

func (viewHash) ID(node *corev3.Node) string {
	return node.GetMetadata().GetFields()[viewMetadataKey].GetStringValue()
}

// servedNode is the node as the caches see it for every stream of a
// group's view: the view in its metadata, and the group too, so that the
// caches classify it as the client's own node was (GroupOf). The caches
// read nothing else of a node, so the streams of a view share one,
// instead of a copy of each client's node per stream.
func servedNode(g Group, view string) *corev3.Node {
	return &corev3.Node{Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		viewMetadataKey:  structpb.NewStringValue(view),
		ProxyMetadataKey: structpb.NewStringValue(string(g)),
	}}}
}

// serviceRef is the service an owner belongs to.
type serviceRef struct{ namespace, name string }

// ownerServices names the service of every owner the plans make: the
// service itself and each host it routes.
func ownerServices(plans []plan.Plan) map[ownerKey]serviceRef {
	out := make(map[ownerKey]serviceRef, 2*len(plans))
	for i := range plans {
		p := &plans[i]
		ref := serviceRef{p.Namespace, p.Service}
		out[serviceOwner(PlanKey(p))] = ref
		for _, h := range p.Hosts {
			out[hostOwner(h.Name)] = ref
		}
	}
	return out
}

// view cuts what sc may see out of the group's translation: the resources
// of visible owners, with each shared Envoy route configuration keeping
// only the virtual hosts of visible services. Resources are shared with
// the base, never copied, except the route configurations that lose
// virtual hosts.
func (b *base) view(key string, sc scope) (*cachev3.Snapshot, *generation, error) {
	if sc.all {
		return b.assemble(allView, b.lists, b.hashes, b.owners)
	}
	owners := map[ownerKey]*ownerInfo{}
	visible := map[resID]bool{}
	for o, info := range b.owners {
		ref, ok := b.services[o]
		if !ok || !sc.allows(ref.namespace, ref.name) {
			continue
		}
		owners[o] = info
		for _, id := range info.owned {
			visible[id] = true
		}
	}
	var lists [numKinds][]types.Resource
	var hashes [numKinds]map[string]string
	for k := range numKinds {
		hashes[k] = map[string]string{}
		for _, res := range b.lists[k] {
			name := cachev3.GetResourceName(res)
			if !visible[resID{k, name}] {
				continue
			}
			h := b.hashes[k][name]
			if rc, ok := res.(*routev3.RouteConfiguration); ok {
				if cut := b.cutRoutes(rc, sc); cut != rc {
					var err error
					if h, err = checkedHash(cut); err != nil {
						return nil, nil, err
					}
					res = cut
				}
			}
			lists[k] = append(lists[k], res)
			hashes[k][name] = h
		}
	}
	return b.assemble(key, lists, hashes, owners)
}

// cutRoutes returns rc with only the virtual hosts sc sees; rc itself
// when it sees all of them. The copy is shallow: everything but the list
// of virtual hosts is shared with rc, which nobody mutates.
func (b *base) cutRoutes(rc *routev3.RouteConfiguration, sc scope) *routev3.RouteConfiguration {
	keep := make([]*routev3.VirtualHost, 0, len(rc.GetVirtualHosts()))
	for _, vh := range rc.GetVirtualHosts() {
		if ref, ok := b.services[hostOwner(vh.GetName())]; ok && sc.allows(ref.namespace, ref.name) {
			keep = append(keep, vh)
		}
	}
	if len(keep) == len(rc.GetVirtualHosts()) {
		return rc
	}
	cut := &routev3.RouteConfiguration{}
	dst := cut.ProtoReflect()
	rc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != "virtual_hosts" {
			dst.Set(fd, v)
		}
		return true
	})
	cut.VirtualHosts = keep
	return cut
}

// ensureView builds a view's snapshots when its first node identifies,
// before that node's first watch reaches the cache.
func (s *Server) ensureView(key string, sc scope) {
	s.pub.Lock()
	defer s.pub.Unlock()
	if key == allView {
		// Staged plans go out whole, for every view, with the first
		// node of any view (Options.StageWithoutClients).
		s.publishStaged()
		return
	}
	if _, ok := s.views[key]; ok {
		return
	}
	s.views[key] = sc
	s.log.Debug("xds: view opened", "view", key, "sees", sc.String())
	if s.staged {
		s.publishStaged()
		return
	}
	if s.bases == nil {
		return // nothing published yet; the first publish builds it
	}
	for _, g := range groups {
		snap, gen, err := s.bases[g].view(key, sc)
		if err != nil {
			// Cut from a base that assembled whole, a view fails only on
			// a bug; its nodes then get nothing rather than too much.
			s.log.Error("xds: building a view failed; its nodes are served nothing", "view", key, "group", g, "err", err)
			continue
		}
		if err := s.setSnapshot(context.Background(), snapKey{g, key}, snap, gen); err != nil {
			s.log.Error("xds: setting a view's snapshot failed", "view", key, "group", g, "err", err)
		}
	}
}

// releaseView drops a view whose last stream closed, unless a new one
// came meanwhile.
func (s *Server) releaseView(key string) {
	if key == allView {
		return
	}
	s.pub.Lock()
	defer s.pub.Unlock()
	if _, ok := s.views[key]; !ok || s.tracker.viewInUse(key) {
		return
	}
	delete(s.views, key)
	for _, g := range groups {
		s.caches[g].ClearSnapshot(key)
		delete(s.gens, snapKey{g, key})
	}
	s.tracker.dropView(key)
	s.log.Debug("xds: view closed", "view", key)
}

// setSnapshot records a generation with the tracker, then sets the
// snapshot: the tracker learns the generation first, so an ACK racing
// back from a fast client finds its version. Caller holds s.pub.
func (s *Server) setSnapshot(ctx context.Context, key snapKey, snap *cachev3.Snapshot, gen *generation) error {
	s.tracker.publish(gen)
	s.gens[key] = gen
	return s.caches[key.group].SetSnapshot(ctx, key.view, snap)
}
