package xdstest

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// SilentNode opens an ADS stream to the xDS server at addr (insecure) as
// a proxyless gRPC client would, as node id, subscribes to host's
// listener, and never answers what it is sent: issue 13's stalling
// client. It returns once the first response arrived; the function it
// returns (or the test's end) closes the stream.
func SilentNode(t testing.TB, addr, id, host string) context.CancelFunc {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := func() {
		cancel()
		_ = conn.Close()
	}
	t.Cleanup(stop)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: id, Cluster: "test", UserAgentName: "gRPC Go"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{host}}); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		for {
			_, err := stream.Recv()
			select {
			case first <- err:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("silent node %s: %v", id, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("silent node %s was sent nothing", id)
	}
	return stop
}
