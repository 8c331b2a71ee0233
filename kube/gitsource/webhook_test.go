package gitsource

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A signed push to POST /webhook/<namespace>/<name> stamps the
// requested-sync annotation, and the controller syncs the new commit at
// once (the GitSource polls hourly). Unknown GitSources, GitSources
// without a webhook secret and bad signatures trigger nothing.
func TestWebhookTriggersSync(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "gs-hook-")
	r, first := newRepo(t, map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "reviews:v1", "")})
	controllerFor(t, ns)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"}, Data: map[string][]byte{"webhook": []byte("hush")}}
	if err := c.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	newGitSource(t, c, ns, "books", r.URL(), func(gs *v1alpha1.GitSource) {
		gs.Spec.SecretRef = &v1alpha1.LocalObjectReference{Name: "hook"}
		gs.Spec.WebhookSecretKey = "webhook"
	})
	// Suspended: it exists, has no webhook, and applies nothing that
	// would conflict with books.
	newGitSource(t, c, ns, "nohook", r.URL(), func(gs *v1alpha1.GitSource) { gs.Spec.Suspend = true })
	waitReady(t, c, ns, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, func(gs *v1alpha1.GitSource) bool {
		return gs.Status.LastAppliedCommit == first
	})

	// The handler of a replica: a plain client, as a follower's.
	mux := http.NewServeMux()
	mux.Handle(WebhookPattern, &Webhook{Client: c, APIReader: c, Log: testr.New(t)})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	body := []byte(`{"ref":"refs/heads/main"}`)
	sign := func(key string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	post := func(path, sig string) int {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	next := r.Push("v2", map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "reviews:v2", "")})
	for _, tc := range []struct {
		name, path, sig string
		want            int
	}{
		{"unknown GitSource", "/webhook/" + ns + "/nobody", sign("hush"), http.StatusNotFound},
		{"no webhook secret", "/webhook/" + ns + "/nohook", sign("hush"), http.StatusNotFound},
		{"bad signature", "/webhook/" + ns + "/books", sign("guess"), http.StatusUnauthorized},
	} {
		if got := post(tc.path, tc.sig); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if an := get(t, c, ns, "books", &v1alpha1.GitSource{}).Annotations; an[AnnotationRequestedSync] != "" {
		t.Fatalf("a refused request stamped %s", an[AnnotationRequestedSync])
	}
	if got := post("/webhook/"+ns+"/books", sign("hush")); got != http.StatusAccepted {
		t.Fatalf("signed push: status %d, want %d", got, http.StatusAccepted)
	}
	waitReady(t, c, ns, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, func(gs *v1alpha1.GitSource) bool {
		return gs.Status.LastAppliedCommit == next
	})
	if img := get(t, c, ns, "reviews", &v1alpha1.Rollout{}).Spec.Template.Spec.Containers[0].Image; img != "reviews:v2" {
		t.Errorf("image %s after the push, want reviews:v2", img)
	}
}
