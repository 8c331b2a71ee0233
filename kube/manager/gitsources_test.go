package manager_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// gitSources.limits of the configuration file reach the GitSource
// controller: a GitSource whose first push is over maxPackBytes is
// CommitRejected with the configured limit named.
func TestGitSourcesLimitsFromConfig(t *testing.T) {
	admin, ctrlCfg := cluster(t)
	ns := kubetest.Namespace(t, admin, "gs-limits-")
	repo := gittest.New(t)
	repo.WriteRandom("assets/big.bin", 1<<20, 1)
	repo.Push("big", nil)

	startSingle(t, ctrlCfg, ns, "gs-limits", `istio: {enabled: false}
gitSources:
  allowFileURLs: true
  limits:
    maxPackBytes: 262144
`)

	gs := &v1alpha1.GitSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "books"},
		Spec: v1alpha1.GitSourceSpec{URL: repo.URL(), Ref: v1alpha1.GitRef{Branch: "main"},
			Interval: &metav1.Duration{Duration: time.Hour}},
	}
	if err := admin.Create(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	var msg string
	poll.Until(t, "the GitSource rejected at maxPackBytes", func() bool {
		if err := admin.Get(context.Background(), client.ObjectKeyFromObject(gs), gs); err != nil {
			return false
		}
		for _, cond := range gs.Status.Conditions {
			if cond.Type == v1alpha1.GitSourceReady && cond.Reason == v1alpha1.GitSourceCommitRejected {
				msg = cond.Message
				return true
			}
		}
		return false
	})
	if !strings.Contains(msg, "maxPackBytes (262144 bytes)") {
		t.Errorf("message %q: want the configured limit named", msg)
	}
}
