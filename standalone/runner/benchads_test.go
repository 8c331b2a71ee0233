package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// benchEnvoy is the benchmark's one proxy: a state-of-the-world ADS
// stream that subscribes as Envoy does (listeners and clusters by
// wildcard, then the route configurations and endpoints they name) and
// ACKs every response, so every service's plan is acknowledged as soon as
// it arrives. It runs in a process of its own (startBenchEnvoy).
type benchEnvoy struct {
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	// names subscribed by type.
	names map[string][]string
}

// benchEnvoyEnv, set to "address node-id", makes this test binary the
// benchmark's proxy instead of running tests (TestMain): a process of its
// own, so that the benchmark's CPU time and memory are the runner's.
const benchEnvoyEnv = "SLUICE_BENCH_ENVOY"

// benchEnvoyDelayEnv, a duration, makes the proxy wait that long before
// each answer (an ACK and the requests it follows with): the ACKs of a
// loaded machine, to reproduce what happens when they come late.
const benchEnvoyDelayEnv = "SLUICE_BENCH_ENVOY_DELAY"

func TestMain(m *testing.M) {
	if v := os.Getenv(benchEnvoyEnv); v != "" {
		addr, id, _ := strings.Cut(v, " ")
		if err := runBenchEnvoy(addr, id); err != nil {
			fmt.Fprintln(os.Stderr, "bench envoy:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startBenchEnvoy runs the proxy in a child process until the benchmark
// ends.
func startBenchEnvoy(tb testing.TB, addr, id string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchEnvoyEnv+"="+addr+" "+id)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// runBenchEnvoy ACKs everything the server at addr sends until the stream
// ends.
func runBenchEnvoy(addr, id string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return err
	}
	defer cc.Close()
	c := &benchEnvoy{names: map[string][]string{}}
	if c.stream, err = discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(context.Background()); err != nil {
		return err
	}
	node := &corev3.Node{Id: id, Cluster: "bench", UserAgentName: "envoy"}
	for i, typ := range []string{resource.ClusterType, resource.ListenerType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := c.stream.Send(req); err != nil {
			return err
		}
	}
	return c.loop()
}

// loop ACKs every response and follows the names it refers to.
func (c *benchEnvoy) loop() error {
	acked := map[string]string{}
	nonce := map[string]string{}
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		acked[typ], nonce[typ] = resp.GetVersionInfo(), resp.GetNonce()
		reqs := []*discoveryv3.DiscoveryRequest{{TypeUrl: typ, VersionInfo: acked[typ], ResponseNonce: nonce[typ], ResourceNames: c.names[typ]}}
		for rt, names := range benchRefs(typ, resp.GetResources()) {
			if slices.Equal(names, c.names[rt]) {
				continue
			}
			c.names[rt] = names
			reqs = append(reqs, &discoveryv3.DiscoveryRequest{TypeUrl: rt, ResourceNames: names, VersionInfo: acked[rt], ResponseNonce: nonce[rt]})
		}
		// A slow proxy, as on a loaded machine, on demand.
		if d, err := time.ParseDuration(os.Getenv(benchEnvoyDelayEnv)); err == nil {
			time.Sleep(d)
		}
		for _, r := range reqs {
			if err := c.stream.Send(r); err != nil {
				return err
			}
		}
	}
}

// benchRefs are the route configurations a listener response names and
// the endpoints a cluster response names, sorted. (The cluster
// subscription is a wildcard, so clusters named by routes need no
// request.)
func benchRefs(typ string, res []*anypb.Any) map[string][]string {
	refs := map[string][]string{}
	for _, a := range res {
		switch typ {
		case resource.ListenerType:
			l := &listenerv3.Listener{}
			if a.UnmarshalTo(l) != nil {
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
