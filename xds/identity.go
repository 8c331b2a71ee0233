package xds

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// A stream's identity is the SPIFFE ID (spiffe:// URI SAN) of the client
// certificate it came with, verified by the TLS handshake against the
// client CA. The node id a stream claims must be that identity, or the
// identity followed by "/" and an instance name (several replicas of one
// workload share a certificate). Without mutual TLS there is no identity
// and node ids are taken as claimed: that is what --insecure-xds (or a
// loopback-only listener) means.

// Reasons a stream is refused, for the refused-streams metric.
const (
	refusedNoIdentity = "no_identity"
	refusedMismatch   = "node_id_mismatch"
)

// peerIdentity returns the SPIFFE ID of a stream's verified client
// certificate, "" when the stream has none. A verified certificate
// without a SPIFFE ID is an error: it proves a key, not a workload.
func peerIdentity(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", nil
	}
	leaf := info.State.VerifiedChains[0][0]
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" && u.Host != "" {
			return u.String(), nil
		}
	}
	return "", errNoSPIFFE
}

var errNoSPIFFE = status.Error(codes.PermissionDenied,
	"xds: the client certificate has no spiffe:// URI SAN, so it names no workload; issue one with the workload's SPIFFE ID")

// checkNode reports whether a stream with identity id may claim nodeID.
func checkNode(id, nodeID string) error {
	if id == "" || nodeID == id || strings.HasPrefix(nodeID, id+"/") {
		return nil
	}
	return status.Error(codes.PermissionDenied, fmt.Sprintf(
		"xds: node id %q does not belong to the client certificate's identity %q (use %q or %q)", nodeID, id, id, id+"/<instance>"))
}
