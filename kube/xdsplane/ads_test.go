package xdsplane

import (
	"context"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// rawClient is a proxyless gRPC node speaking ADS by hand, as the xds
// package's own tests do: it subscribes to one host's listener and
// answers every response with an ACK, or, while nack holds a message,
// with a NACK carrying it, as a client that cannot apply the routes does.
// A real gRPC client never NACKs what Sluice translates, hence this one.
type rawClient struct {
	nack atomic.Pointer[string]
	// answered counts the responses answered.
	answered atomic.Int64
}

// startRawClient connects node nodeID to the xDS server at addr until
// the test ends.
func startRawClient(t testing.TB, addr, nodeID, host string) *rawClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = cc.Close() })
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: nodeID, Cluster: "test", UserAgentName: "gRPC Go"}
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{host}}); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{}
	go func() {
		acked := ""
		for {
			resp, err := s.Recv()
			if err != nil {
				return // the test ended
			}
			req := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), ResourceNames: []string{host}, VersionInfo: resp.GetVersionInfo()}
			if msg := c.nack.Load(); msg != nil {
				req.VersionInfo, req.ErrorDetail = acked, &statuspb.Status{Code: 3, Message: *msg}
			} else {
				acked = resp.GetVersionInfo()
			}
			if err := s.Send(req); err != nil {
				return
			}
			c.answered.Add(1)
		}
	}()
	return c
}

// nackWith makes the client reject every response from now on.
func (c *rawClient) nackWith(msg string) { c.nack.Store(&msg) }
