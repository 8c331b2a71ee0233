package xds

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/sluicehq/sluice/internal/untrusted"
)

// A stream's identity is verified when it opens, by Options.Authenticator
// (mutual TLS, a service-account token, or both). The node id the stream
// claims must be that identity's SPIFFE ID, or the SPIFFE ID followed by
// "/" and an instance name: several replicas of one workload share a
// certificate or a service account, and each needs a node id of its own.
//
// Without an Authenticator the server keeps its older rule: a verified
// client certificate binds the stream, and a stream without one (no client
// CA configured, or --insecure-xds) has no identity, so node ids are
// taken as claimed.

// authenticate verifies a stream with a, or with the optional mutual-TLS
// rule when a is nil. Every error it returns carries a gRPC code.
func authenticate(ctx context.Context, a Authenticator) (Identity, error) {
	if a == nil {
		id, err := MutualTLS().Authenticate(ctx)
		if errors.Is(err, ErrNoCredentials) {
			return Identity{}, nil
		}
		if err != nil {
			return Identity{}, asStatusError(err)
		}
		return id, nil
	}
	id, err := a.Authenticate(ctx)
	if err == nil && id.IsZero() {
		err = Refuse(ReasonNotWorkload, codes.PermissionDenied, "the credential names no workload")
	}
	if err != nil {
		return Identity{}, asStatusError(err)
	}
	return id, nil
}

// checkNode reports whether a stream with identity id may claim nodeID.
func checkNode(id Identity, nodeID string) error {
	if id.IsZero() || nodeID == id.SPIFFE || strings.HasPrefix(nodeID, id.SPIFFE+"/") {
		return nil
	}
	return Refuse(ReasonMismatch, codes.PermissionDenied,
		"node id %q does not belong to the stream's verified identity %q (%s); use %q or %q",
		untrusted.Text(nodeID, 256), id.SPIFFE, id.Method, id.SPIFFE, id.SPIFFE+"/<instance>")
}
