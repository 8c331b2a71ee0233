package runner

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluicehq/sluice/internal/poll"
)

// stratADS is a raw state-of-the-world ADS stream: the stand-in for a
// proxy whose answers the test decides. It subscribes as Envoy does
// (listeners and clusters by wildcard, then the route configurations and
// endpoints they name) or as proxyless gRPC does (the listeners of the
// targets it dials, then the clusters and endpoints they name), and ACKs
// every response unless nack returns a reason to reject it.
type stratADS struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	// nack, if set, returns the error text to NACK a response with.
	nack func(typeURL string, res []*anypb.Any) string

	mu    sync.Mutex
	wild  map[string]bool
	names map[string][]string
	acked map[string]string
	nonce map[string]string
	// last are the resources of the last response ACKed, by type.
	last   map[string][]*anypb.Any
	nacked []string
}

// stratEnvoyADS connects as an Envoy sidecar.
func stratEnvoyADS(t *testing.T, addr, id string) *stratADS {
	t.Helper()
	node := &corev3.Node{Id: id, Cluster: "test", UserAgentName: "envoy"}
	return stratConnect(t, addr, node, nil, map[string][]string{resource.ClusterType: nil, resource.ListenerType: nil})
}

// stratGRPCADS connects as a proxyless gRPC client of xds:///target.
func stratGRPCADS(t *testing.T, addr, id, target string, nack func(string, []*anypb.Any) string) *stratADS {
	t.Helper()
	node := &corev3.Node{Id: id, Cluster: "test", UserAgentName: "gRPC Go"}
	return stratConnect(t, addr, node, nack, map[string][]string{resource.ListenerType: {target}})
}

func stratConnect(t *testing.T, addr string, node *corev3.Node, nack func(string, []*anypb.Any) string, initial map[string][]string) *stratADS {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &stratADS{t: t, nack: nack, wild: map[string]bool{}, names: map[string][]string{}, acked: map[string]string{},
		nonce: map[string]string{}, last: map[string][]*anypb.Any{}}
	c.stream, err = discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		_ = cc.Close()
		t.Fatal(err)
	}
	first := true
	// Clusters before listeners, as Envoy asks.
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		names, ok := initial[typ]
		if !ok {
			continue
		}
		c.names[typ], c.wild[typ] = names, len(names) == 0
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResourceNames: names}
		if first {
			req.Node, first = node, false
		}
		if err := c.stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.loop()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cc.Close()
	})
	return c
}

// loop answers every response until the stream ends; it is the stream's
// only sender after the first requests.
func (c *stratADS) loop() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return
		}
		typ := resp.GetTypeUrl()
		msg := ""
		if c.nack != nil {
			msg = c.nack(typ, resp.GetResources())
		}
		c.mu.Lock()
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce(), ResourceNames: c.names[typ]}
		if msg != "" {
			req.VersionInfo = c.acked[typ]
			req.ErrorDetail = &statuspb.Status{Code: 3, Message: msg}
			c.nacked = append(c.nacked, msg)
		} else {
			req.VersionInfo = resp.GetVersionInfo()
			c.acked[typ] = resp.GetVersionInfo()
			c.last[typ] = resp.GetResources()
		}
		c.nonce[typ] = resp.GetNonce()
		var follow []*discoveryv3.DiscoveryRequest
		if msg == "" {
			for rt, names := range stratRefs(typ, resp.GetResources()) {
				if c.wild[rt] || slices.Equal(names, c.names[rt]) {
					continue
				}
				c.names[rt] = names
				follow = append(follow, &discoveryv3.DiscoveryRequest{TypeUrl: rt, ResourceNames: names, VersionInfo: c.acked[rt], ResponseNonce: c.nonce[rt]})
			}
		}
		c.mu.Unlock()
		for _, r := range append([]*discoveryv3.DiscoveryRequest{req}, follow...) {
			if err := c.stream.Send(r); err != nil {
				return
			}
		}
	}
}

// stratRefs are the resources a response names, by type, sorted.
func stratRefs(typ string, res []*anypb.Any) map[string][]string {
	refs := map[string][]string{}
	for _, a := range res {
		switch typ {
		case resource.ListenerType:
			l := &listenerv3.Listener{}
			if a.UnmarshalTo(l) != nil {
				continue
			}
			if hcm := stratAPIRoutes(l); hcm != nil {
				refs[resource.ClusterType] = append(refs[resource.ClusterType], stratClusters(hcm)...)
				continue
			}
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					hcm := &hcmv3.HttpConnectionManager{}
					if f.GetTypedConfig().UnmarshalTo(hcm) == nil && hcm.GetRds() != nil {
						refs[resource.RouteType] = append(refs[resource.RouteType], hcm.GetRds().GetRouteConfigName())
					}
				}
			}
		case resource.RouteType:
			rc := &routev3.RouteConfiguration{}
			if a.UnmarshalTo(rc) == nil {
				refs[resource.ClusterType] = append(refs[resource.ClusterType], stratClusters(rc)...)
			}
		case resource.ClusterType:
			cl := &clusterv3.Cluster{}
			if a.UnmarshalTo(cl) == nil {
				name := cl.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = cl.GetName()
				}
				refs[resource.EndpointType] = append(refs[resource.EndpointType], name)
			}
		}
	}
	for k, v := range refs {
		slices.Sort(v)
		refs[k] = slices.Compact(v)
	}
	return refs
}

// stratAPIRoutes is the inline route configuration of a gRPC API
// listener, nil for an Envoy listener.
func stratAPIRoutes(l *listenerv3.Listener) *routev3.RouteConfiguration {
	api := l.GetApiListener().GetApiListener()
	if api == nil {
		return nil
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if api.UnmarshalTo(hcm) != nil {
		return nil
	}
	return hcm.GetRouteConfig()
}

// stratClusters are the clusters a route configuration names, whatever
// their weight, mirrors included.
func stratClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
				out = append(out, wc.GetName())
			}
			if c := r.GetRoute().GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, m := range r.GetRoute().GetRequestMirrorPolicies() {
				out = append(out, m.GetCluster())
			}
		}
	}
	return out
}

// routeConfig waits for the route configuration name (Envoy) or the
// inline one of listener name (gRPC) to satisfy ok, and returns it.
func (c *stratADS) routeConfig(name string, ok func(*routev3.RouteConfiguration) bool) *routev3.RouteConfiguration {
	c.t.Helper()
	var got *routev3.RouteConfiguration
	poll.Within(c.t, 20*time.Second, "route configuration "+name, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, a := range c.last[resource.RouteType] {
			rc := &routev3.RouteConfiguration{}
			if a.UnmarshalTo(rc) == nil && rc.GetName() == name && ok(rc) {
				got = rc
				return true
			}
		}
		for _, a := range c.last[resource.ListenerType] {
			l := &listenerv3.Listener{}
			if a.UnmarshalTo(l) == nil && l.GetName() == name {
				if rc := stratAPIRoutes(l); rc != nil && ok(rc) {
					got = rc
					return true
				}
			}
		}
		return false
	})
	return got
}

// endpoints waits for the load assignment of cluster and returns its
// addresses as ip:port.
func (c *stratADS) endpoints(cluster string) []string {
	c.t.Helper()
	var out []string
	poll.Within(c.t, 20*time.Second, "endpoints of "+cluster, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, a := range c.last[resource.EndpointType] {
			cla := &endpointv3.ClusterLoadAssignment{}
			if a.UnmarshalTo(cla) != nil || cla.GetClusterName() != cluster {
				continue
			}
			out = nil
			for _, le := range cla.GetEndpoints() {
				for _, e := range le.GetLbEndpoints() {
					sa := e.GetEndpoint().GetAddress().GetSocketAddress()
					out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
				}
			}
			return true
		}
		return false
	})
	return out
}

// rejections are the NACK texts sent so far.
func (c *stratADS) rejections() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nacked)
}

// stratRoute is the route named name of the virtual host host, or nil.
func stratRoute(rc *routev3.RouteConfiguration, host, name string) *routev3.Route {
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != host {
			continue
		}
		for _, r := range vh.GetRoutes() {
			if r.GetName() == name {
				return r
			}
		}
	}
	return nil
}

// stratWeights are a route's weighted clusters, "cluster=weight" in order.
func stratWeights(r *routev3.Route) []string {
	var out []string
	for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
		out = append(out, wc.GetName()+"="+strconv.FormatUint(uint64(wc.GetWeight().GetValue()), 10))
	}
	return out
}
