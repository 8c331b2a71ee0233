package xds

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Group is a class of xDS client that needs its own shape of resources. All
// nodes of a group that may see the same services share one snapshot, so
// a publish reaches every one of them through a single SetSnapshot.
type Group string

const (
	// GroupEnvoy is Envoy sidecars (and anything else that is not gRPC).
	GroupEnvoy Group = "envoy"
	// GroupGRPC is proxyless gRPC clients.
	GroupGRPC Group = "grpc"
)

// groups lists every group in a fixed order, for loops that must be
// deterministic.
var groups = [...]Group{GroupEnvoy, GroupGRPC}

// ProxyMetadataKey is the node metadata key that picks a group explicitly,
// with the value "envoy" or "grpc". It wins over the user agent, for
// clients whose user agent is not recognised (a gRPC library in another
// language with an unusual name, a test client).
const ProxyMetadataKey = "sluice.dev/proxy"

// GroupOf classifies a node. Explicit metadata wins; otherwise a user agent
// starting with "gRPC" ("gRPC Go", "gRPC Java", "gRPC C-core" ...) is a
// proxyless gRPC client and everything else is treated as Envoy, which
// reports "envoy".
func GroupOf(node *corev3.Node) Group {
	if v, ok := node.GetMetadata().GetFields()[ProxyMetadataKey]; ok {
		switch Group(strings.ToLower(v.GetStringValue())) {
		case GroupGRPC:
			return GroupGRPC
		case GroupEnvoy:
			return GroupEnvoy
		}
	}
	if strings.HasPrefix(strings.ToLower(node.GetUserAgentName()), "grpc") {
		return GroupGRPC
	}
	return GroupEnvoy
}
