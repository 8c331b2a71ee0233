package clusterapi

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// rewatchDelay spaces out watches the API server ends early, so a proxy
// that drops every watch does not turn the wait into a busy loop.
const rewatchDelay = time.Second

// Command issues a manual command and waits until the engine applied it or
// ctx ends. The command records who sent it: the identity the API server
// reports for the credentials (a SelfSubjectReview), not what the client
// claims, so status.lastCommand.by and the engine's Command<Kind> Event name
// the same user as the API server's audit log of the patch. With
// Options.StatedActor it records req.By instead: the caller (Access) has
// authenticated that person itself and patches with its own credentials.
// It then sets the sluice.dev/command annotation with a JSON merge patch
// and watches the Rollout until status.lastCommand.id is the command's ID.
//
// A refused command is not an error: check Refused. When ctx ends first the
// error wraps rolloutapi.ErrUnavailable; the command stays in the annotation and
// takes effect when the controller next reconciles the Rollout, unless a
// later command replaces it.
func (b *Backend) Command(ctx context.Context, namespace, name string, req rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	if err := rolloutapi.ValidCommand(req.Kind); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	by, err := b.identity(ctx, req.By)
	if err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	cmd, err := controller.NewCommand(req.Kind, by, b.o.Now())
	if err != nil {
		return rolloutapi.CommandResponse{}, fmt.Errorf("%s command for rollout %s: %w", req.Kind, key, err)
	}
	patch, err := controller.CommandPatch(cmd)
	if err != nil {
		return rolloutapi.CommandResponse{}, fmt.Errorf("%s command for rollout %s: %w", req.Kind, key, err)
	}
	// A merge patch of the annotation alone: no resourceVersion, since
	// the annotation is last-writer-wins by design, and nothing else of
	// the Rollout is touched. A missing Rollout is a 404, not a create.
	ro := &v1alpha1.Rollout{}
	ro.Namespace, ro.Name = namespace, name
	if err := b.c.Patch(ctx, ro, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return rolloutapi.CommandResponse{}, classify(err, fmt.Sprintf("patch annotation %s of rollout %s", controller.CommandAnnotation, key))
	}
	rec, err := b.await(ctx, ro, cmd, key)
	if err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	return rolloutapi.ResponseOf(rec), nil
}

// identity is who the API server says the credentials belong to. Where it
// cannot say — a server without authentication.k8s.io/v1
// SelfSubjectReview (before Kubernetes 1.28) or one whose RBAC refuses it —
// the command still goes out, naming whom the kubeconfig impersonates, else
// the kubeconfig's user name, else what the client stated: the annotation's
// "by" is a claim either way, and the audit log of the patch is the proof.
// Only an unreachable server stops the command here.
func (b *Backend) identity(ctx context.Context, stated string) (string, error) {
	if b.o.StatedActor {
		return stated, nil
	}
	review := &authenticationv1.SelfSubjectReview{}
	err := b.c.Create(ctx, review)
	if err == nil && review.Status.UserInfo.Username != "" {
		return review.Status.UserInfo.Username, nil
	}
	if err != nil && unreachable(err) {
		return "", classify(err, "ask the API server who the credentials belong to (SelfSubjectReview)")
	}
	for _, name := range []string{b.impersonated, b.o.User, stated} {
		if name != "" {
			return name, nil
		}
	}
	return "", nil
}

// await watches the Rollout from the version the patch returned until
// status.lastCommand has the command's ID. Watching from that version
// misses nothing: every later change of the Rollout arrives as an event.
func (b *Backend) await(ctx context.Context, ro *v1alpha1.Rollout, cmd controller.Command, key types.NamespacedName) (v1alpha1.CommandRecord, error) {
	what := fmt.Sprintf("watch rollout %s", key)
	for {
		if lc := ro.Status.LastCommand; lc != nil && lc.ID == cmd.ID {
			return *lc, nil
		}
		w, err := b.c.Watch(ctx, &v1alpha1.RolloutList{}, &client.ListOptions{
			Namespace:     key.Namespace,
			FieldSelector: fields.OneTermEqualSelector("metadata.name", key.Name),
			Raw:           &metav1.ListOptions{ResourceVersion: ro.ResourceVersion, AllowWatchBookmarks: true},
		})
		if err != nil {
			return v1alpha1.CommandRecord{}, b.fail(ctx, err, what, cmd, key)
		}
		next, err := follow(ctx, w, ro, cmd.ID)
		w.Stop()
		switch {
		case err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)):
			// The version watched from was compacted away: read the
			// Rollout again and watch from there.
			if next, err = b.get(ctx, key.Namespace, key.Name); err != nil {
				return v1alpha1.CommandRecord{}, b.fail(ctx, err, what, cmd, key)
			}
		case err != nil:
			return v1alpha1.CommandRecord{}, b.fail(ctx, err, what, cmd, key)
		case next.Status.LastCommand == nil || next.Status.LastCommand.ID != cmd.ID:
			// The API server ended the watch (they have a time limit).
			select {
			case <-ctx.Done():
				return v1alpha1.CommandRecord{}, b.fail(ctx, ctx.Err(), what, cmd, key)
			case <-time.After(rewatchDelay):
			}
		}
		ro = next
	}
}

// follow reads w until the Rollout carries the command's ID, the watch
// ends (nil error: watch again from the returned Rollout's version) or
// fails.
func follow(ctx context.Context, w watch.Interface, ro *v1alpha1.Rollout, id string) (*v1alpha1.Rollout, error) {
	for {
		select {
		case <-ctx.Done():
			return ro, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return ro, nil
			}
			switch ev.Type {
			case watch.Error:
				return ro, apierrors.FromObject(ev.Object)
			case watch.Deleted:
				return ro, apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("rollouts").GroupResource(), ro.Name)
			case watch.Bookmark:
				if obj, ok := ev.Object.(client.Object); ok {
					ro = ro.DeepCopy()
					ro.ResourceVersion = obj.GetResourceVersion()
				}
			case watch.Added, watch.Modified:
				next, ok := ev.Object.(*v1alpha1.Rollout)
				if !ok {
					return ro, fmt.Errorf("watch of rollout %s/%s sent a %T", ro.Namespace, ro.Name, ev.Object)
				}
				ro = next
				if lc := ro.Status.LastCommand; lc != nil && lc.ID == id {
					return ro, nil
				}
			}
		}
	}
}

// fail classifies an error of waiting for the command. When ctx ended,
// that is what happened, whatever the call that noticed says: the
// annotation is set and the controller did not apply it in time.
func (b *Backend) fail(ctx context.Context, err error, what string, cmd controller.Command, key types.NamespacedName) error {
	if ctx.Err() == nil {
		return classify(err, what)
	}
	return &apiError{
		kind: rolloutapi.ErrUnavailable,
		msg: fmt.Sprintf("%s command %s for rollout %s was not applied in time: is `sluice controller` running? "+
			"It stays in annotation %s and takes effect when the controller next reconciles the rollout",
			cmd.Kind, cmd.ID, key, controller.CommandAnnotation),
		cause: ctx.Err(),
	}
}
