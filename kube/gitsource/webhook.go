package gitsource

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// WebhookPattern is the push webhook's route on the webhook server
// (http.ServeMux pattern): POST /webhook/<namespace>/<name>.
const WebhookPattern = "POST /webhook/{namespace}/{name}"

// Webhook serves the push webhooks of every GitSource, on every replica.
// A verified push to the GitSource's branch or tag does not sync here: it
// sets AnnotationRequestedSync on the GitSource, and the leader, which
// watches GitSources, syncs at once. So a push that reaches a follower
// is not lost, and the replica that answers needs no mirror.
type Webhook struct {
	// Client reads GitSources (the manager's cache) and patches their
	// annotation.
	Client client.Client
	// APIReader reads the Secret, one Get per request.
	APIReader client.Reader
	Log       logr.Logger
	// Now stamps the annotation; default time.Now.
	Now func() time.Time
}

// ServeHTTP answers 404 for a GitSource that does not exist or has no
// webhook secret (the same answer, so a caller learns nothing about
// which GitSources exist), then verifies and handles the push as
// gitsync's webhook does.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	log := h.Log.WithValues("gitsource", key.String())
	gs := &v1alpha1.GitSource{}
	if err := h.Client.Get(r.Context(), key, gs); err != nil {
		if apierrors.IsNotFound(err) {
			http.NotFound(w, r)
			return
		}
		log.Error(err, "webhook: cannot read the GitSource")
		http.Error(w, "cannot read the GitSource", http.StatusServiceUnavailable)
		return
	}
	if gs.Spec.WebhookSecretKey == "" || !gs.DeletionTimestamp.IsZero() {
		http.NotFound(w, r)
		return
	}
	secret, err := h.secret(r.Context(), gs)
	if err != nil {
		log.Error(err, "webhook: no secret to verify pushes with")
		http.Error(w, "the GitSource's webhook secret is unusable; see its status", http.StatusServiceUnavailable)
		return
	}
	// Only the ref matters here: credentials stay with the leader.
	src := gitsync.Source{Name: gitapply.GitSourceID(gs.Namespace, gs.Name), URL: gs.Spec.URL,
		Branch: gs.Spec.Ref.Branch, Tag: gs.Spec.Ref.Tag, Commit: gs.Spec.Ref.Commit, Path: gs.Spec.Path}
	hook, err := gitsync.NewWebhook(src, log, func(ctx context.Context) error { return h.request(ctx, gs) }, gitsync.WebhookOptions{Secret: secret})
	if err != nil {
		log.Error(err, "webhook: unusable GitSource")
		http.Error(w, "the GitSource is invalid; see its status", http.StatusServiceUnavailable)
		return
	}
	hook.ServeHTTP(w, r)
}

func (h *Webhook) secret(ctx context.Context, gs *v1alpha1.GitSource) ([]byte, error) {
	sec, err := readSecret(ctx, h.APIReader, gs)
	if err != nil {
		return nil, err
	}
	return webhookSecret(gs, sec)
}

// request stamps AnnotationRequestedSync with a merge patch of the
// annotation alone, which needs no resourceVersion: two pushes at once
// both end in a sync.
func (h *Webhook) request(ctx context.Context, gs *v1alpha1.GitSource) error {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{AnnotationRequestedSync: now().UTC().Format(time.RFC3339Nano)},
	}})
	if err != nil {
		return fmt.Errorf("encoding the sync request: %w", err)
	}
	target := &v1alpha1.GitSource{}
	target.Namespace, target.Name = gs.Namespace, gs.Name
	if err := h.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("requesting a sync of GitSource %s/%s: %w", gs.Namespace, gs.Name, err)
	}
	return nil
}

var _ http.Handler = (*Webhook)(nil)
