package clusterapi

import (
	"errors"
	"net/url"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/rolloutapi"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	rollouts := schema.GroupResource{Group: "sluice.dev", Resource: "rollouts"}
	odd := errors.New("something else")
	for _, tc := range []struct {
		name    string
		err     error
		want    error
		wantMsg string
	}{
		{"not found", apierrors.NewNotFound(rollouts, "web"), rolloutapi.ErrNotFound, `get rollout ns/web: rollouts.sluice.dev "web" not found`},
		{"forbidden", apierrors.NewForbidden(rollouts, "web", errors.New(`User "bob" cannot get`)), rolloutapi.ErrUnauthorized, `User "bob" cannot get`},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), rolloutapi.ErrUnauthorized, "token expired"},
		{"invalid", apierrors.NewBadRequest("bad"), rolloutapi.ErrBadRequest, "bad"},
		{"refused", &url.Error{Op: "Get", URL: "https://k:6443/api", Err: syscall.ECONNREFUSED}, rolloutapi.ErrUnavailable, "cannot reach the API server"},
		{"overloaded", apierrors.NewTooManyRequests("slow down", 1), rolloutapi.ErrUnavailable, "slow down"},
		{"no CRD", &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "sluice.dev", Kind: "Rollout"}}, rolloutapi.ErrUnavailable, "install the CRDs"},
		{"other", odd, odd, "get rollout ns/web: something else"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := classify(tc.err, "get rollout ns/web")
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("classify(%v) = %v; want %v, wrapping the cause, containing %q", tc.err, err, tc.want, tc.wantMsg)
			}
		})
	}
}
