package xds

import (
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// The typed configs the examples use must be linked in for protojson to
// resolve their Any type URLs.
var (
	_ = &httpv3.HttpProtocolOptions{}
	_ = &tlsv3.UpstreamTlsContext{}
)

// TestEnvoyBootstrapExamples parses every bootstrap in examples/envoy the
// way Envoy does (YAML → proto, unknown fields rejected), validates it, and
// checks that it really takes everything from Sluice over ADS.
func TestEnvoyBootstrapExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../examples/envoy/*.yaml")
	must(t, err)
	if len(files) < 2 {
		t.Fatalf("found %d bootstrap examples, want the plain and the mTLS/delta one", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			must(t, err)
			js, err := yaml.YAMLToJSON(raw)
			must(t, err)
			b := &bootstrapv3.Bootstrap{}
			if err := protojson.Unmarshal(js, b); err != nil {
				t.Fatalf("not an Envoy v3 bootstrap: %v", err)
			}
			if err := b.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if b.GetNode().GetId() == "" || b.GetNode().GetCluster() == "" {
				t.Error("node id and cluster must be set: Sluice reports ACKs and NACKs by them")
			}
			ads := b.GetDynamicResources().GetAdsConfig()
			if ads.GetTransportApiVersion() != corev3.ApiVersion_V3 || len(ads.GetGrpcServices()) != 1 {
				t.Fatalf("ads_config %v, want one v3 gRPC service", ads)
			}
			switch ads.GetApiType() {
			case corev3.ApiConfigSource_GRPC, corev3.ApiConfigSource_DELTA_GRPC:
			default:
				t.Errorf("ads api_type %v, want GRPC or DELTA_GRPC", ads.GetApiType())
			}
			for name, cs := range map[string]*corev3.ConfigSource{
				"lds": b.GetDynamicResources().GetLdsConfig(),
				"cds": b.GetDynamicResources().GetCdsConfig(),
			} {
				if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
					t.Errorf("%s_config %v, want ads with v3 resources", name, cs)
				}
			}
			target := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
			statics := b.GetStaticResources().GetClusters()
			if len(statics) != 1 || statics[0].GetName() != target {
				t.Fatalf("static clusters %v, want only %q, the way to Sluice", statics, target)
			}
			addr := statics[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if addr.GetAddress() != "sluice" || addr.GetPortValue() != 18000 {
				t.Errorf("control plane at %s:%d, want sluice:18000", addr.GetAddress(), addr.GetPortValue())
			}
			opts := &httpv3.HttpProtocolOptions{}
			must(t, statics[0].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(opts))
			if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
				t.Error("the xDS cluster must speak HTTP/2 (gRPC)")
			}
			if ts := statics[0].GetTransportSocket(); ts != nil {
				tc := &tlsv3.UpstreamTlsContext{}
				must(t, ts.GetTypedConfig().UnmarshalTo(tc))
				if err := tc.Validate(); err != nil {
					t.Errorf("TLS context: %v", err)
				}
				if len(tc.GetCommonTlsContext().GetTlsCertificates()) != 1 {
					t.Error("mutual TLS needs a client certificate")
				}
			}
		})
	}
}
