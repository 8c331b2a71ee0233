package xdsplane

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/xds"
)

// EndpointSlices is the xds.EndpointSource of controller mode: the
// addresses of a revision are the ready endpoints of the EndpointSlices
// labelled with its service (workload.LabelService) and revision
// (workload.LabelRevision) in the Rollout's namespace. The EndpointSlice
// controller produces those slices from the per-revision headless Services
// the reconciler makes, copying the Services' labels onto them.
//
// It reads the manager's cache, never the API server, so a publish costs
// no request; CacheByObject keeps only Sluice's slices in that cache.
type EndpointSlices struct {
	reader  client.Reader
	changed chan struct{}
}

// listTimeout bounds a lookup. The cache answers at once once synced; the
// bound only keeps a publish from hanging on a cache that never syncs.
const listTimeout = 30 * time.Second

// NewEndpointSlices reads EndpointSlices from c (the manager's cache) and
// rings Changed on every add, update and delete of one of Sluice's slices.
// It may be called before the cache starts.
func NewEndpointSlices(ctx context.Context, c cache.Cache) (*EndpointSlices, error) {
	inf, err := c.GetInformer(ctx, &discoveryv1.EndpointSlice{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("EndpointSlice informer: %w", err)
	}
	s := &EndpointSlices{reader: c, changed: make(chan struct{}, 1)}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.notify(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			// A resync delivers the same object again; nothing moved.
			o, okOld := oldObj.(*discoveryv1.EndpointSlice)
			n, okNew := newObj.(*discoveryv1.EndpointSlice)
			if okOld && okNew && o.ResourceVersion == n.ResourceVersion {
				return
			}
			s.notify(oldObj)
			s.notify(newObj)
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			s.notify(obj)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("EndpointSlice event handler: %w", err)
	}
	return s, nil
}

// notify rings the bell for one of Sluice's slices. The channel holds one
// pending signal; the server reads the latest state when it wakes, so one
// signal covers any number of changes.
func (s *EndpointSlices) notify(obj any) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || es.Labels[workload.LabelService] == "" || es.Labels[workload.LabelRevision] == "" {
		return
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Changed implements xds.EndpointSource.
func (s *EndpointSlices) Changed() <-chan struct{} { return s.changed }

// Endpoints implements xds.EndpointSource.
func (s *EndpointSlices) Endpoints(namespace, service, revision string) ([]xds.Endpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	var list discoveryv1.EndpointSliceList
	err := s.reader.List(ctx, &list, client.InNamespace(namespace),
		client.MatchingLabels{workload.LabelService: service, workload.LabelRevision: revision})
	if err != nil {
		return nil, fmt.Errorf("list EndpointSlices of %s/%s revision %s: %w", namespace, service, revision, err)
	}
	return endpointsOf(list.Items), nil
}

// endpointsOf is the addresses clients may be sent to: per endpoint the
// first address (the others are the same endpoint, as for kube-proxy),
// only IP literals (Envoy accepts no host names in EDS), only endpoints
// that are ready (a nil condition means ready) and not terminating. The
// result is sorted and free of duplicates (a pod moving between slices is
// briefly in two), so the same endpoints always give the same resources.
func endpointsOf(items []discoveryv1.EndpointSlice) []xds.Endpoint {
	var out []xds.Endpoint
	for i := range items {
		es := &items[i]
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(es)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			c := ep.Conditions
			if len(ep.Addresses) == 0 || (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) {
				continue
			}
			addr, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || addr.Zone() != "" {
				continue
			}
			out = append(out, xds.Endpoint{Address: addr.Unmap().String(), Port: port})
		}
	}
	slices.SortFunc(out, func(a, b xds.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(out)
}

// preferredPortNames choose among the ports of a slice with several. The
// slices of Sluice's per-revision Services have exactly one port (the
// Service has one); several only come from slices made some other way.
var preferredPortNames = []string{"grpc", "http"}

// slicePort is the TCP port clients use: the slice's only port, or else
// the first of preferredPortNames it has.
func slicePort(es *discoveryv1.EndpointSlice) (uint32, bool) {
	usable := func(p discoveryv1.EndpointPort) bool {
		return p.Port != nil && *p.Port > 0 && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP)
	}
	if len(es.Ports) == 1 {
		p := es.Ports[0]
		if !usable(p) {
			return 0, false
		}
		return uint32(*p.Port), true
	}
	for _, name := range preferredPortNames {
		for _, p := range es.Ports {
			if p.Name != nil && *p.Name == name && usable(p) {
				return uint32(*p.Port), true
			}
		}
	}
	return 0, false
}

// CacheByObject narrows the manager's EndpointSlice cache to Sluice's
// slices: those with both the service and the revision label. Merge it
// into cache.Options.ByObject with the controller's.
func CacheByObject() map[client.Object]cache.ByObject {
	sel := labels.NewSelector()
	for _, key := range []string{workload.LabelService, workload.LabelRevision} {
		if req, err := labels.NewRequirement(key, selection.Exists, nil); err == nil {
			sel = sel.Add(*req)
		}
	}
	return map[client.Object]cache.ByObject{&discoveryv1.EndpointSlice{}: {Label: sel}}
}
