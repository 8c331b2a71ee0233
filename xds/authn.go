package xds

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Authenticator verifies who is at the other end of an xDS stream, once,
// when the stream opens (as istiod does): from the connection's TLS state
// or the stream's gRPC metadata.
//
// Authenticate returns the verified identity, an error wrapping
// ErrNoCredentials when the stream carries no credential of the kind this
// authenticator reads (so FirstOf tries the next), or any other error to
// refuse the stream; a *RefusedError names the metric's reason and the
// gRPC code the client sees.
type Authenticator interface {
	Authenticate(ctx context.Context) (Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context) (Identity, error)

// Authenticate implements Authenticator.
func (f AuthenticatorFunc) Authenticate(ctx context.Context) (Identity, error) { return f(ctx) }

// ErrNoCredentials says a stream carries no credential for an authenticator.
var ErrNoCredentials = errors.New("no credentials of this kind")

// Reasons a stream is refused, the label values of
// sluice_xds_refused_streams_total{reason}. The set is fixed so the
// metric's cardinality stays bounded whatever clients send.
const (
	// ReasonNoCredentials: authentication is on and the stream brought
	// neither a client certificate nor a bearer token.
	ReasonNoCredentials = "no_credentials"
	// ReasonNoIdentity: a verified client certificate without a SPIFFE ID.
	ReasonNoIdentity = "no_identity"
	// ReasonTokenRejected: a bearer token that is malformed, expired, for
	// another audience, or unknown to the token's issuer.
	ReasonTokenRejected = "token_rejected"
	// ReasonNotWorkload: a valid credential that names no workload (a
	// token of a person rather than a service account).
	ReasonNotWorkload = "not_workload"
	// ReasonUnavailable: the verifier could not be asked (TokenReview
	// failed); the client should retry.
	ReasonUnavailable = "authenticator_unavailable"
	// ReasonMismatch: the node id does not belong to the verified identity.
	ReasonMismatch = "node_id_mismatch"
)

// refusalReasons are created at zero when the metrics are, so a
// dashboard sees every series before the first refusal.
var refusalReasons = []string{
	ReasonNoCredentials, ReasonNoIdentity, ReasonTokenRejected,
	ReasonNotWorkload, ReasonUnavailable, ReasonMismatch,
}

// RefusedError refuses a stream: Reason is one of the Reason constants,
// Code is what the client receives, Err the explanation it reads.
type RefusedError struct {
	Reason string
	Code   codes.Code
	Err    error
}

// Refuse builds a *RefusedError with a formatted explanation.
func Refuse(reason string, code codes.Code, format string, args ...any) error {
	return &RefusedError{Reason: reason, Code: code, Err: fmt.Errorf(format, args...)}
}

func (e *RefusedError) Error() string { return "xds: " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// GRPCStatus makes the stream end with Code rather than Unknown.
func (e *RefusedError) GRPCStatus() *status.Status { return status.New(e.Code, e.Error()) }

// refusalReason maps an authentication error to its metric label; an
// error that is no *RefusedError is counted as the verifier being
// unavailable, never as a label taken from its text.
func refusalReason(err error) string {
	if re := (*RefusedError)(nil); errors.As(err, &re) && re.Reason != "" {
		for _, r := range refusalReasons {
			if r == re.Reason {
				return r
			}
		}
	}
	return ReasonUnavailable
}

// asStatusError gives an authentication error a gRPC code, so a client
// never sees codes.Unknown for a refusal.
func asStatusError(err error) error {
	if re := (*RefusedError)(nil); errors.As(err, &re) {
		return re
	}
	return status.Error(codes.Unavailable, "xds: authentication failed: "+err.Error())
}

// FirstOf tries authenticators in order: the first that finds its kind of
// credential on the stream decides, whether it accepts or refuses (a bad
// token is not rescued by falling through). A stream with no credential
// for any of them is refused as no_credentials.
func FirstOf(authenticators ...Authenticator) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context) (Identity, error) {
		for _, a := range authenticators {
			id, err := a.Authenticate(ctx)
			if errors.Is(err, ErrNoCredentials) {
				continue
			}
			return id, err
		}
		return Identity{}, Refuse(ReasonNoCredentials, codes.Unauthenticated,
			"the stream brought no credentials: present a client certificate with a SPIFFE ID (mutual TLS) or an %q header with a service-account token", "authorization: Bearer")
	})
}

// MutualTLS reads the identity from the stream's client certificate,
// verified by the TLS handshake against the server's client CAs: the
// certificate's spiffe:// URI SAN. A verified certificate without one is
// refused; it proves a key, not a workload.
func MutualTLS() Authenticator {
	return AuthenticatorFunc(func(ctx context.Context) (Identity, error) {
		info, ok := peerTLS(ctx)
		if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
			return Identity{}, ErrNoCredentials
		}
		leaf := info.State.VerifiedChains[0][0]
		for _, u := range leaf.URIs {
			if u.Scheme != "spiffe" {
				continue
			}
			id, err := ParseSPIFFE(u.String(), MethodMTLS)
			if err != nil {
				return Identity{}, Refuse(ReasonNoIdentity, codes.PermissionDenied, "the client certificate's URI SAN is no valid SPIFFE ID: %w", err)
			}
			return id, nil
		}
		return Identity{}, Refuse(ReasonNoIdentity, codes.PermissionDenied,
			"the client certificate has no spiffe:// URI SAN, so it names no workload; issue one with the workload's SPIFFE ID")
	})
}

// TokenVerifier checks a bearer token and returns whose it is, or a
// *RefusedError (ReasonTokenRejected, ReasonNotWorkload,
// ReasonUnavailable).
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token string) (Identity, error)
}

// maxTokenBytes bounds what is handed to the verifier; projected
// service-account tokens are about 1 KiB.
const maxTokenBytes = 16 << 10

// BearerToken reads the stream's "authorization: Bearer <token>" metadata
// and asks v whose token it is. It accepts a token only over TLS, where
// the client has checked whom it hands the token to; on a plaintext
// connection the token is refused (it has just been exposed).
func BearerToken(v TokenVerifier) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context) (Identity, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		vals := md.Get("authorization")
		if len(vals) == 0 {
			return Identity{}, ErrNoCredentials
		}
		if len(vals) > 1 {
			return Identity{}, Refuse(ReasonTokenRejected, codes.Unauthenticated, "%d authorization headers; send one", len(vals))
		}
		scheme, token, ok := strings.Cut(vals[0], " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
			return Identity{}, Refuse(ReasonTokenRejected, codes.Unauthenticated, "the authorization header must be %q", "Bearer <token>")
		}
		if len(token) > maxTokenBytes {
			return Identity{}, Refuse(ReasonTokenRejected, codes.Unauthenticated, "the bearer token is %d bytes, more than %d", len(token), maxTokenBytes)
		}
		if _, tlsOK := peerTLS(ctx); !tlsOK {
			return Identity{}, Refuse(ReasonTokenRejected, codes.Unauthenticated, "a bearer token is accepted only over TLS")
		}
		id, err := v.VerifyToken(ctx, token)
		if err != nil {
			return Identity{}, err
		}
		if id.IsZero() {
			return Identity{}, Refuse(ReasonNotWorkload, codes.PermissionDenied, "the token names no workload")
		}
		return id, nil
	})
}

func peerTLS(ctx context.Context) (credentials.TLSInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return credentials.TLSInfo{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return info, ok
}
