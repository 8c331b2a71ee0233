package xds

import (
	"context"
	"errors"
	"io"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// adsClient speaks SotW ADS the way Envoy and gRPC do: it subscribes,
// ACKs every response (or NACKs what reject names), and, when follow is
// set, subscribes to the routes, clusters and endpoints its listeners and
// clusters reference. It is the test and benchmark stand-in for a proxy.
type adsClient struct {
	node   *corev3.Node
	follow bool
	// reject, if set, returns a NACK message for a response ("" = ACK).
	reject func(*discoveryv3.DiscoveryResponse) string
	// hold, if set and true for a response, leaves it unanswered.
	hold func(*discoveryv3.DiscoveryResponse) bool

	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	names  [numKinds][]string
	// wildcard marks kinds subscribed with no names at start.
	wildcard [numKinds]bool
	acked    [numKinds]string
	nonce    [numKinds]string
	// responses receives a value after each answered response.
	responses chan struct{}
	done      chan error
}

// envoyNode and grpcNode are nodes of the two groups.
func envoyNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, Cluster: "test", UserAgentName: "envoy"}
}

func grpcNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, Cluster: "test", UserAgentName: "gRPC Go"}
}

// start opens the stream and sends the first requests: for each kind the
// names given (nil for a wildcard), for kinds not given nothing until
// follow finds references.
func (c *adsClient) start(ctx context.Context, cc grpc.ClientConnInterface, initial map[kind][]string) error {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	c.stream = s
	c.responses = make(chan struct{}, 1024)
	c.done = make(chan error, 1)
	first := true
	for k := range numKinds {
		names, ok := initial[k]
		if !ok {
			continue
		}
		c.names[k], c.wildcard[k] = names, len(names) == 0
		req := &discoveryv3.DiscoveryRequest{TypeUrl: kindURL[k], ResourceNames: names}
		if first {
			req.Node, first = c.node, false
		}
		if err := s.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream (a refusal): its status
				// comes from Recv, as grpc-go documents for SendMsg.
				_, err = s.Recv()
			}
			return err
		}
	}
	go func() { c.done <- c.loop() }()
	return nil
}

func (c *adsClient) loop() error {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return err
		}
		k, ok := kindOf(resp.GetTypeUrl())
		if !ok || (c.hold != nil && c.hold(resp)) {
			continue
		}
		req := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), ResourceNames: c.names[k]}
		msg := ""
		if c.reject != nil {
			msg = c.reject(resp)
		}
		if msg != "" {
			req.VersionInfo = c.acked[k]
			req.ErrorDetail = &statuspb.Status{Code: 3, Message: msg}
		} else {
			req.VersionInfo = resp.GetVersionInfo()
			c.acked[k] = resp.GetVersionInfo()
		}
		c.nonce[k] = resp.GetNonce()
		if err := c.stream.Send(req); err != nil {
			return err
		}
		if c.follow && msg == "" {
			if err := c.followRefs(k, resp); err != nil {
				return err
			}
		}
		select {
		case c.responses <- struct{}{}:
		default:
		}
	}
}

// followRefs subscribes to what a response references, as a proxy does.
func (c *adsClient) followRefs(k kind, resp *discoveryv3.DiscoveryResponse) error {
	refs := map[kind][]string{}
	for _, a := range resp.GetResources() {
		switch k {
		case kindListener:
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return err
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if api := l.GetApiListener(); api != nil {
				if err := api.GetApiListener().UnmarshalTo(hcm); err != nil {
					return err
				}
				refs[kindCluster] = append(refs[kindCluster], routeClusters(hcm.GetRouteConfig())...)
				continue
			}
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						return err
					}
					refs[kindRoute] = append(refs[kindRoute], hcm.GetRds().GetRouteConfigName())
				}
			}
		case kindRoute:
			rc := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err != nil {
				return err
			}
			refs[kindCluster] = append(refs[kindCluster], routeClusters(rc)...)
		case kindCluster:
			cl := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(cl); err != nil {
				return err
			}
			refs[kindEndpoint] = append(refs[kindEndpoint], cl.GetEdsClusterConfig().GetServiceName())
		}
	}
	for rk, names := range refs {
		slices.Sort(names)
		names = slices.Compact(names)
		// A wildcard subscription already covers everything.
		if c.wildcard[rk] || slices.Equal(names, c.names[rk]) {
			continue
		}
		c.names[rk] = names
		req := &discoveryv3.DiscoveryRequest{TypeUrl: kindURL[rk], ResourceNames: names, VersionInfo: c.acked[rk], ResponseNonce: c.nonce[rk]}
		if err := c.stream.Send(req); err != nil {
			return err
		}
	}
	return nil
}

func routeClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
				if wc.GetWeight().GetValue() > 0 {
					out = append(out, wc.GetName())
				}
			}
			for _, m := range r.GetRoute().GetRequestMirrorPolicies() {
				out = append(out, m.GetCluster())
			}
		}
	}
	return out
}

// explicitGroup marks a node's group in its metadata.
func explicitGroup(n *corev3.Node, g Group) *corev3.Node {
	n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{ProxyMetadataKey: structpb.NewStringValue(string(g))}}
	return n
}

// deltaClient is an Envoy-like incremental ADS client: wildcard listeners
// and clusters, routes and endpoints by name, every response ACKed.
type deltaClient struct {
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	// have is what the client applied: name → version, per kind. The
	// test reads it only after the stream ended.
	have      [numKinds]map[string]string
	responses chan struct{}
	done      chan error
}

// start opens the stream, telling the server what the client already has
// (as Envoy does when it reconnects).
func (c *deltaClient) start(ctx context.Context, cc grpc.ClientConnInterface, have [numKinds]map[string]string) error {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	c.stream, c.have = s, have
	c.responses = make(chan struct{}, 1024)
	c.done = make(chan error, 1)
	for k := range numKinds {
		if c.have[k] == nil {
			c.have[k] = map[string]string{}
		}
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: kindURL[k], InitialResourceVersions: c.have[k]}
		if k == kindRoute || k == kindEndpoint {
			if len(c.have[k]) == 0 {
				continue // named kinds wait for references
			}
			for n := range c.have[k] {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		if k == kindListener {
			req.Node = c.node
		}
		if err := s.Send(req); err != nil {
			return err
		}
	}
	go func() { c.done <- c.loop() }()
	return nil
}

func (c *deltaClient) loop() error {
	subscribed := [numKinds]map[string]bool{}
	for k := range numKinds {
		subscribed[k] = map[string]bool{}
		for n := range c.have[k] {
			subscribed[k][n] = true
		}
	}
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return err
		}
		k, ok := kindOf(resp.GetTypeUrl())
		if !ok {
			continue
		}
		var refs []string
		for _, r := range resp.GetResources() {
			c.have[k][r.GetName()] = r.GetVersion()
			switch k {
			case kindListener:
				l := &listenerv3.Listener{}
				if err := r.GetResource().UnmarshalTo(l); err != nil {
					return err
				}
				for _, fc := range l.GetFilterChains() {
					for _, f := range fc.GetFilters() {
						hcm := &hcmv3.HttpConnectionManager{}
						if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
							return err
						}
						refs = append(refs, hcm.GetRds().GetRouteConfigName())
					}
				}
			case kindCluster:
				refs = append(refs, r.GetName())
			}
		}
		for _, n := range resp.GetRemovedResources() {
			delete(c.have[k], n)
		}
		if err := c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		next := map[kind]kind{kindListener: kindRoute, kindCluster: kindEndpoint}
		if rk, ok := next[k]; ok {
			var add []string
			for _, n := range refs {
				if !subscribed[rk][n] {
					subscribed[rk][n] = true
					add = append(add, n)
				}
			}
			if len(add) > 0 {
				if err := c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: kindURL[rk], ResourceNamesSubscribe: add}); err != nil {
					return err
				}
			}
		}
		select {
		case c.responses <- struct{}{}:
		default:
		}
	}
}
