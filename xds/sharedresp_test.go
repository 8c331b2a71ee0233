package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func routeAny(t testing.TB, name string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(&routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{name}}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// decoded is what a client reads from the codec's encoding of v.
func decoded(t testing.TB, c *responseCodec, v proto.Message) *discoveryv3.DiscoveryResponse {
	t.Helper()
	data, err := c.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got := &discoveryv3.DiscoveryResponse{}
	if err := proto.Unmarshal(data.Materialize(), got); err != nil {
		t.Fatalf("decoding the codec's encoding: %v", err)
	}
	return got
}

func TestResponseCodecDecodesToTheResponse(t *testing.T) {
	t.Parallel()
	withUnknown := routeAny(t, "u")
	withUnknown.ProtoReflect().SetUnknown([]byte{0x18, 0x01}) // field 3, varint 1
	unknownResp := &discoveryv3.DiscoveryResponse{VersionInfo: "v", Resources: []*anypb.Any{routeAny(t, "a")}}
	unknownResp.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x07}) // field 31, varint 7
	for _, tc := range []struct {
		name string
		resp *discoveryv3.DiscoveryResponse
	}{
		{"every field", &discoveryv3.DiscoveryResponse{
			VersionInfo: "v1", TypeUrl: resource.RouteType, Nonce: "7", Canary: true,
			Resources:      []*anypb.Any{routeAny(t, "a"), routeAny(t, "b"), routeAny(t, "a")},
			ControlPlane:   &corev3.ControlPlane{Identifier: "sluice"},
			ResourceErrors: []*discoveryv3.ResourceError{{ResourceName: &discoveryv3.ResourceName{Name: "c"}}},
		}},
		{"no resources", &discoveryv3.DiscoveryResponse{VersionInfo: "v1", TypeUrl: resource.ClusterType, Nonce: "1"}},
		{"empty Anys", &discoveryv3.DiscoveryResponse{Nonce: "2", Resources: []*anypb.Any{{}, {TypeUrl: resource.ClusterType}, {Value: []byte{1, 2}}}}},
		{"an Any with unknown fields is encoded whole", &discoveryv3.DiscoveryResponse{Nonce: "3", Resources: []*anypb.Any{routeAny(t, "a"), withUnknown}}},
		{"the response's unknown fields are kept", unknownResp},
		{"a large resource", &discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{{TypeUrl: resource.RouteType, Value: make([]byte, 300_000)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := decoded(t, newResponseCodec(), tc.resp); !proto.Equal(got, tc.resp) {
				t.Errorf("decoded %v, want %v", got, tc.resp)
			}
		})
	}
}

// TestResponseCodecSharesRecords: two streams sent the same resource
// point at one copy of it, and a record lives while publishes still serve
// it and goes two publishes after the last one that did.
func TestResponseCodecSharesRecords(t *testing.T) {
	t.Parallel()
	c := newResponseCodec()
	a, b := routeAny(t, "a"), routeAny(t, "b")
	send := func(nonce string, rs ...*anypb.Any) mem.BufferSlice {
		t.Helper()
		data, err := c.Marshal(&discoveryv3.DiscoveryResponse{VersionInfo: "v", TypeUrl: resource.RouteType, Nonce: nonce, Resources: rs})
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != 1+len(rs) {
			t.Fatalf("%d buffers for %d resources, want a head and one per resource", len(data), len(rs))
		}
		return data
	}
	same := func(x, y mem.Buffer) bool { return &x.ReadOnlyData()[0] == &y.ReadOnlyData()[0] }

	// Another stream's copy of the same resource, as the snapshot cache
	// marshals one per stream.
	aAgain := proto.Clone(a).(*anypb.Any)
	first, second := send("1", a, b), send("2", aAgain)
	if !same(first[1], second[1]) {
		t.Error("the same resource sent to two streams was encoded twice")
	}
	if same(first[0], second[0]) {
		t.Error("two streams' heads (their nonces) share a buffer")
	}

	c.records.rotate() // a publish that still serves a, not b
	kept := send("3", a)
	if !same(first[1], kept[1]) {
		t.Error("a record still served was encoded again after one publish")
	}
	c.records.rotate()
	if !same(first[1], send("4", a)[1]) {
		t.Error("a record served in every generation was encoded again")
	}
	if same(first[2], send("5", b)[1]) {
		t.Error("a record unused for two publishes is still kept")
	}
}

func TestResponseCodecOtherMessages(t *testing.T) {
	t.Parallel()
	c := newResponseCodec()
	req := &discoveryv3.DiscoveryRequest{VersionInfo: "v", TypeUrl: resource.ClusterType, ResourceNames: []string{"a"}, Node: &corev3.Node{Id: "n"}}
	data, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got := &discoveryv3.DiscoveryRequest{}
	if err := c.Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, req) {
		t.Errorf("round trip %v, want %v", got, req)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("marshalled a string")
	}
}

func FuzzResponseCodec(f *testing.F) {
	f.Add("v1", "7", resource.RouteType, []byte{0x0a, 0x01, 'a'}, []byte{}, true)
	f.Add("", "", "", []byte{}, []byte{0xff}, false)
	c := newResponseCodec()
	f.Fuzz(func(t *testing.T, version, nonce, typeURL string, v1, v2 []byte, rotate bool) {
		if rotate {
			c.records.rotate()
		}
		resp := &discoveryv3.DiscoveryResponse{VersionInfo: version, Nonce: nonce, TypeUrl: typeURL,
			Resources: []*anypb.Any{{TypeUrl: typeURL, Value: v1}, {TypeUrl: typeURL, Value: v2}, {TypeUrl: version, Value: v1}}}
		want, err := proto.Marshal(resp)
		if err != nil {
			t.Skip("not encodable by proto either:", err)
		}
		got := decoded(t, c, resp)
		if !proto.Equal(got, resp) {
			t.Fatalf("decoded %v, want %v", got, resp)
		}
		if data, _ := c.Marshal(resp); data.Len() != len(want) {
			t.Errorf("encoded %d bytes, proto %d", data.Len(), len(want))
		}
	})
}
