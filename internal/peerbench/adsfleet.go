package peerbench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Fleet is N Envoy-like ADS clients (state of the world over one
// aggregated stream each, as an Envoy sidecar speaks to istiod or Sluice):
// each subscribes to every listener and cluster, then to the route
// configurations its listeners name and the endpoints its clusters name,
// and ACKs every response at once. The same clients serve both servers of
// a comparison; only the node (id, metadata) differs, as each server
// expects it.
//
// A change is recognised by its weight: Expect(w) arms a marker, and a
// client counts once it has ACKed a route configuration holding a route
// that sends w% to one of its weighted clusters.
type Fleet struct {
	conns []*grpc.ClientConn
	n     int

	marker     atomic.Int32
	seen       []atomic.Int32 // per client: the last marker it ACKed
	acked      atomic.Int32
	reconnects atomic.Int64 // streams opened again after an error
	resps      atomic.Int64 // responses received, all clients
	bytes      atomic.Int64 // their size in bytes
	firstNS    atomic.Int64 // first receipt of the marker
	lastNS     atomic.Int64 // last ACK of the marker
	mu         sync.Mutex
	done       chan struct{}
	errs       chan error
}

// Reconnection backoff: Envoy's defaults for its xDS stream (500 ms base;
// its maximum is larger, 10 s is enough here).
const (
	reconnectBase = 500 * time.Millisecond
	reconnectMax  = 10 * time.Second
)

// decodeError is a response a client could not read: the end of the
// benchmark, not a reason to reconnect.
type decodeError struct{ error }

func (e decodeError) Unwrap() error { return e.error }

// Reconnects is how many times a client opened its stream again.
func (f *Fleet) Reconnects() int64 { return f.reconnects.Load() }

// Node builds client i's node.
type Node func(i int) *corev3.Node

// StartFleet connects n clients to addr (plaintext), one HTTP/2
// connection per perConn streams (1 is what n Envoys or gRPC clients
// would open; 100 spares the benchmark's own process), and returns once
// each has ACKed its first route configuration. They run until ctx ends.
// tlsConf, when set, has the clients dial TLS instead of plaintext.
func StartFleet(ctx context.Context, addr string, n, perConn int, tlsConf *tls.Config, node Node, timeout time.Duration) (*Fleet, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	f := &Fleet{n: n, seen: make([]atomic.Int32, n), errs: make(chan error, n), done: make(chan struct{})}
	perConn = max(1, perConn)
	f.conns = make([]*grpc.ClientConn, max(1, (n+perConn-1)/perConn))
	for i := range f.conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
			grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<24),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			return nil, err
		}
		f.conns[i] = cc
	}
	go func() {
		<-ctx.Done()
		for _, cc := range f.conns {
			_ = cc.Close()
		}
	}()
	ready := make(chan struct{}, n)
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		go func() {
			c := &adsClient{f: f, i: i, node: node(i), ready: ready}
			var once sync.Once
			started := func() { once.Do(func() { <-sem }) }
			// Like Envoy, a client whose stream ends (istiod refuses
			// streams past its request rate limit) opens a new one after
			// a jittered, doubling backoff.
			backoff := reconnectBase
			for {
				err := c.run(ctx, f.conns[i%len(f.conns)], started)
				if ctx.Err() != nil {
					return
				}
				var de decodeError
				if errors.As(err, &de) {
					f.errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				f.reconnects.Add(1)
				time.Sleep(backoff/2 + rand.N(backoff/2))
				backoff = min(2*backoff, reconnectMax)
			}
		}()
	}
	deadline := time.After(timeout)
	for got := 0; got < n; got++ {
		select {
		case <-ready:
		case err := <-f.errs:
			return nil, err
		case <-deadline:
			return nil, fmt.Errorf("%d of %d clients got their routes within %s", got, n, timeout)
		}
	}
	return f, nil
}

// Expect arms the marker weight w: from now on the clients count the
// first route configuration they ACK that holds w.
func (f *Fleet) Expect(w int32) {
	f.mu.Lock()
	f.done = make(chan struct{})
	f.mu.Unlock()
	f.acked.Store(0)
	f.firstNS.Store(0)
	f.lastNS.Store(0)
	f.marker.Store(w)
}

// Wait waits until every client has ACKed the marker, and returns when
// the first client received it and when the last one ACKed it.
func (f *Fleet) Wait(ctx context.Context, timeout time.Duration) (first, last time.Time, err error) {
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	select {
	case <-done:
		return time.Unix(0, f.firstNS.Load()), time.Unix(0, f.lastNS.Load()), nil
	case err := <-f.errs:
		return time.Time{}, time.Time{}, err
	case <-time.After(timeout):
		return time.Time{}, time.Time{}, fmt.Errorf("%d of %d clients ACKed weight %d within %s", f.acked.Load(), f.n, f.marker.Load(), timeout)
	case <-ctx.Done():
		return time.Time{}, time.Time{}, ctx.Err()
	}
}

// Traffic is how many responses the clients received so far, and their
// size in bytes (protobuf encoding).
func (f *Fleet) Traffic() (responses, bytes int64) { return f.resps.Load(), f.bytes.Load() }

// adsClient is one stream.
type adsClient struct {
	f     *Fleet
	i     int
	node  *corev3.Node
	ready chan<- struct{}
	sent  bool // ready reported

	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	names  map[string][]string // subscribed names per type (nil: wildcard)
}

func (c *adsClient) run(ctx context.Context, cc *grpc.ClientConn, started func()) error {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		started()
		return err
	}
	c.stream, c.names = s, map[string][]string{}
	// Envoy's order: clusters, then listeners, both wildcard.
	err = errors.Join(
		s.Send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType}),
		s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}),
	)
	started()
	if err != nil {
		return err
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		recv := time.Now()
		c.f.resps.Add(1)
		c.f.bytes.Add(int64(proto.Size(resp)))
		refs, hasMarker, err := c.read(resp)
		if err != nil {
			return decodeError{err}
		}
		t := resp.GetTypeUrl()
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: resp.GetVersionInfo(),
			ResponseNonce: resp.GetNonce(), ResourceNames: c.names[t]}); err != nil {
			return err
		}
		if hasMarker {
			c.count(recv)
		}
		if t == resourcev3.RouteType && !c.sent {
			c.sent = true
			c.ready <- struct{}{}
		}
		for rt, names := range refs {
			slices.Sort(names)
			names = slices.Compact(names)
			if slices.Equal(names, c.names[rt]) {
				continue
			}
			c.names[rt] = names
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: rt, ResourceNames: names}); err != nil {
				return err
			}
		}
	}
}

// count records that this client ACKed the current marker.
func (c *adsClient) count(recv time.Time) {
	f := c.f
	m := f.marker.Load()
	if m == 0 || f.seen[c.i].Swap(m) == m {
		return
	}
	f.firstNS.CompareAndSwap(0, recv.UnixNano())
	for now := time.Now().UnixNano(); ; {
		last := f.lastNS.Load()
		if now <= last || f.lastNS.CompareAndSwap(last, now) {
			break
		}
	}
	if int(f.acked.Add(1)) == f.n {
		f.mu.Lock()
		close(f.done)
		f.mu.Unlock()
	}
}

// read decodes a response: the names it references (route
// configurations of listeners, endpoints of clusters) and whether a
// route configuration in it holds the marker weight.
func (c *adsClient) read(resp *discoveryv3.DiscoveryResponse) (map[string][]string, bool, error) {
	refs := map[string][]string{}
	marker := c.f.marker.Load()
	found := false
	switch resp.GetTypeUrl() {
	case resourcev3.ListenerType:
		var routes []string
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return nil, false, err
			}
			for _, fc := range append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain()) {
				for _, fl := range fc.GetFilters() {
					if fl.GetTypedConfig().GetTypeUrl() != hcmType {
						continue
					}
					hcm := &hcmv3.HttpConnectionManager{}
					if err := fl.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						return nil, false, err
					}
					if name := hcm.GetRds().GetRouteConfigName(); name != "" {
						routes = append(routes, name)
					}
				}
			}
		}
		refs[resourcev3.RouteType] = routes
	case resourcev3.ClusterType:
		var eds []string
		for _, a := range resp.GetResources() {
			cl := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(cl); err != nil {
				return nil, false, err
			}
			if cl.GetType() == clusterv3.Cluster_EDS {
				name := cl.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = cl.GetName()
				}
				eds = append(eds, name)
			}
		}
		refs[resourcev3.EndpointType] = eds
	case resourcev3.RouteType:
		if marker == 0 {
			break
		}
		for _, a := range resp.GetResources() {
			rc := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err != nil {
				return nil, false, err
			}
			if hasWeight(rc, marker) {
				found = true
				break
			}
		}
	}
	return refs, found, nil
}

const hcmType = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// hasWeight reports whether a route of rc sends w percent of its requests
// to one of its weighted clusters (whatever the weights' total).
func hasWeight(rc *routev3.RouteConfiguration, w int32) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			wc := r.GetRoute().GetWeightedClusters()
			if wc == nil {
				continue
			}
			var total uint32
			for _, cw := range wc.GetClusters() {
				total += cw.GetWeight().GetValue()
			}
			for _, cw := range wc.GetClusters() {
				if total > 0 && uint64(cw.GetWeight().GetValue())*100 == uint64(w)*uint64(total) {
					return true
				}
			}
		}
	}
	return false
}
