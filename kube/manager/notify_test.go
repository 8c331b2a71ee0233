package manager_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Controller mode sends notifications from the configuration format of
// `sluice run`, with the webhook's URL and HMAC key in a Secret of the
// controller's namespace (secretKeyRef), read with the controller's own
// permissions. A real HTTP receiver, whose URL carries a token only the
// Secret knows, gets every engine Event of a rollout to 100%, each signed
// with the key from the Secret, in order.
func TestNotificationsFromSecrets(t *testing.T) {
	admin, ctrlCfg := cluster(t)
	ctx := context.Background()
	ns := kubetest.Namespace(t, admin, "notify-")

	key := rand.Text()
	rec := &receiver{secret: []byte(key)}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	token := rand.Text()
	rec.path = "/hooks/" + token
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: controllerNamespace, GenerateName: "sluice-notify-"},
		StringData: map[string]string{"url": srv.URL + rec.path + "\n", "hmac": key},
	}
	if err := admin.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), secret) })

	startSingle(t, ctrlCfg, ns, "notify", fmt.Sprintf(`notifications:
  targets:
  - name: audit
    kind: webhook
    urlRef: {secretKeyRef: {name: %[1]s, key: url}}
    secretRef: {secretKeyRef: {name: %[1]s, key: hmac}}
    events: ["*"]
`, secret.Name))
	kctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go func() {
		for kctx.Err() == nil {
			_ = kubetest.MarkAvailable(kctx, admin, ns)
			time.Sleep(100 * time.Millisecond)
		}
	}()

	ro := gatewayRollout(ns, "ratings", &v1alpha1.Router{Replicas: &v1alpha1.ReplicasRouter{}})
	ro.Spec.Replicas = new(int32(2))
	if err := admin.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, v1alpha1.ReasonStable)
	poll.Until(t, "the stable revision serving", func() bool {
		return admin.Get(ctx, client.ObjectKeyFromObject(ro), ro) == nil && ro.Status.StableRevision != "" && ro.Status.Phase == v1alpha1.PhaseHealthy
	})
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return err
		}
		ro.Spec.Template.Spec.Containers[0].Image = "ratings:v2"
		return admin.Update(ctx, ro)
	}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, v1alpha1.ReasonPromoted)

	got := rec.reasons()
	want := []string{v1alpha1.ReasonStable, v1alpha1.ReasonNewRevision, v1alpha1.ReasonStepAdvanced, v1alpha1.ReasonPromoted}
	if i := indexSubsequence(got, want); i < 0 {
		t.Errorf("notifications %v: want %v among them, in that order", got, want)
	}
	for _, p := range rec.payloads() {
		if p.Rollout.Namespace != ns || p.Rollout.Name != "ratings" || p.Version != notify.PayloadVersion {
			t.Errorf("payload %+v: want rollout %s/ratings, version %d", p, ns, notify.PayloadVersion)
		}
	}
	if bad := rec.refused(); bad != "" {
		t.Error(bad)
	}
}

// receiver is a webhook receiver that checks each request's path and
// signature, as a real one would.
type receiver struct {
	secret []byte
	path   string

	mu   sync.Mutex
	got  []notify.WebhookPayload
	errs []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	var p notify.WebhookPayload
	switch {
	case err != nil:
		r.errs = append(r.errs, err.Error())
	case req.URL.Path != r.path:
		r.errs = append(r.errs, "request to "+req.URL.Path+", not the Secret's URL")
	case notify.Verify(r.secret, body, req.Header.Get(notify.SignatureHeader)) != nil:
		r.errs = append(r.errs, "a body not signed with the Secret's key")
	case json.Unmarshal(body, &p) != nil:
		r.errs = append(r.errs, "a body that is not a webhook payload: "+string(body))
	default:
		r.got = append(r.got, p)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusBadRequest)
}

func (r *receiver) payloads() []notify.WebhookPayload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *receiver) reasons() []string {
	var out []string
	for _, p := range r.payloads() {
		out = append(out, p.Event.Reason)
	}
	return out
}

func (r *receiver) refused() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return ""
	}
	return "the receiver refused: " + strings.Join(r.errs, "; ")
}

func (r *receiver) waitFor(t *testing.T, reason string) {
	t.Helper()
	poll.Until(t, "a "+reason+" notification", func() bool {
		if bad := r.refused(); bad != "" {
			t.Fatal(bad)
		}
		return slices.Contains(r.reasons(), reason)
	})
}

// indexSubsequence is where want starts as a subsequence of got, or -1.
func indexSubsequence(got, want []string) int {
	start, j := -1, 0
	for i, g := range got {
		if j < len(want) && g == want[j] {
			if j == 0 {
				start = i
			}
			j++
		}
	}
	if j < len(want) {
		return -1
	}
	return start
}
