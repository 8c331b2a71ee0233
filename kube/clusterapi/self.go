package clusterapi

import (
	"context"
	"fmt"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/sluicehq/sluice/rolloutapi"
)

// Self is the holder of b's own credentials as a dashboard viewer: a
// person running `sluice dashboard` against a cluster with their
// kubeconfig. They read and command with their credentials, so the API
// server's RBAC decides as it does for the CLI; the buttons of a Rollout
// show where a SelfSubjectAccessReview says they may patch it. Their name
// is the one the API server reports (SelfSubjectReview), else the
// kubeconfig's.
func (b *Backend) Self(ctx context.Context) (rolloutapi.Viewer, error) {
	name, err := b.identity(ctx, "")
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = "you"
	}
	return &self{b: b, name: name, decisions: newMemo[decision](10*time.Second, b.o.Now)}, nil
}

type self struct {
	b         *Backend
	name      string
	decisions *memo[decision]
}

func (s *self) Identity() rolloutapi.Identity { return rolloutapi.Identity{Name: s.name} }
func (s *self) Backend() rolloutapi.Backend   { return s.b }
func (s *self) Check(context.Context) error   { return nil }

func (s *self) MayCommand(ctx context.Context, namespace, name string) (bool, string) {
	at := attributes{verb: "patch", res: rollouts, namespace: namespace, obj: name}
	d, err := s.decisions.get(namespace+"/"+name, func() (decision, error) {
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: at.verb, Group: at.res.group, Resource: at.res.name, Name: name},
		}}
		if err := s.b.c.Create(ctx, r); err != nil {
			return decision{}, classify(err, fmt.Sprintf("ask the API server whether you may patch %s %s/%s (SelfSubjectAccessReview)", rollouts, namespace, name))
		}
		return decision{allowed: r.Status.Allowed && !r.Status.Denied, reason: r.Status.Reason}, nil
	})
	switch {
	case err != nil:
		return false, err.Error()
	case !d.allowed:
		return false, forbidden(s.name, at, d.reason)
	}
	return true, ""
}
