package clusterapi

import (
	"errors"
	"fmt"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/sluicehq/sluice/rolloutapi"
)

// apiError is an error of the API server (or of reaching it) classified as
// one of rolloutapi's errors, so the CLI's exit codes mean the same
// against a cluster as against a `sluice run` server. Its text is the API
// server's own: "rollouts.sluice.dev "x" is forbidden: User "bob" cannot
// patch ..." says more than rolloutapi.ErrUnauthorized's generic words.
type apiError struct {
	kind  error // one of rolloutapi.ErrNotFound, ErrUnauthorized, ErrBadRequest, ErrUnavailable
	msg   string
	cause error
}

func (e *apiError) Error() string   { return e.msg }
func (e *apiError) Unwrap() []error { return []error{e.kind, e.cause} }

// classify wraps err, which happened while doing what (e.g. "patch rollout
// ns/name"), in the api error it amounts to. Errors that fit none keep
// their own identity, with context.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	kind := kindOf(err)
	if kind == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg := what + ": " + err.Error()
	switch {
	case unreachable(err):
		msg = what + ": cannot reach the API server: " + err.Error()
	case meta.IsNoMatchError(err):
		msg = what + ": the cluster does not serve sluice.dev/v1alpha1 Rollouts; install the CRDs (kubectl apply -k crds/): " + err.Error()
	}
	return &apiError{kind: kind, msg: msg, cause: err}
}

func kindOf(err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return rolloutapi.ErrNotFound
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return rolloutapi.ErrUnauthorized
	case apierrors.IsBadRequest(err), apierrors.IsInvalid(err):
		return rolloutapi.ErrBadRequest
	case unreachable(err), meta.IsNoMatchError(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err),
		apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err):
		return rolloutapi.ErrUnavailable
	}
	return nil
}

// unreachable reports whether err is a failure to talk to the API server at
// all: connection refused, DNS, TLS, a dropped connection. client-go
// returns those as *url.Error from the HTTP client; an error the API
// server answered with is an APIStatus instead.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}
