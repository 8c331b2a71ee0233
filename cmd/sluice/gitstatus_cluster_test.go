package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/manager"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// gitClusterEnv is an API server of its own: cluster_test.go's is stopped
// by the test that uses it.
var gitClusterEnv = kubetest.NewEnv()

const gitClusterRollout = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  replicas: 1
  template:
    metadata: {labels: {app: reviews}}
    spec:
      containers: [{name: app, image: "reviews:%s"}]
  strategy:
    canary:
      steps:
      - setWeight: %d
      - pause: {}
`

// Controller mode: the real controller (kube/manager) follows a real Git
// repository through its configuration's git section. A push with an
// invalid manifest shows on the Rollout (status.gitSync: head rejected,
// its problem, the last good commit in force), in `sluice status` against
// the cluster, and in --require-synced's exit status, until a good push
// applies.
func TestStatusTellsTheGitStateOfAController(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server and the controller")
	}
	t.Cleanup(func() {
		if err := gitClusterEnv.Stop(); err != nil {
			t.Error(err)
		}
	})
	cfg, _ := gitClusterEnv.Start(t)
	admin := gitClusterEnv.Client(t)
	ctx := context.Background()
	for _, name := range []string{"sluice-system", "apps"} {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	repo := gittest.New(t)
	push := func(msg, tag string, weight int) string {
		return repo.Push(msg, map[string]string{"reviews.yaml": fmt.Sprintf(gitClusterRollout, tag, weight)})
	}
	good := push("reviews v1", "v1", 20)

	ctrl.SetLogger(logr.Discard())
	mcfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: sluice-system
stateDir: %s
watchNamespaces: [apps]
defaultNamespace: apps
leaderElection: {enabled: false}
http: {metricsAddress: "0", probeAddress: "0", webhookAddress: "0"}
istio: {enabled: false}
xds:
  address: 127.0.0.1:0
  insecurePlaintext: true
  replicaName: git-status
git:
  url: %s
  branch: main
  interval: 1s
`, t.TempDir(), repo.URL()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := manager.New(manager.Options{Config: mcfg, RestConfig: cfg, Log: logr.Discard(),
		Registerer: prometheus.NewRegistry(), SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Start(t, "controller", c)

	data, err := gitClusterEnv.AddUser(t, envtest.User{Name: "alice", Groups: []string{"system:masters"}}).KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "alice.kubeconfig")
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		t.Fatal(err)
	}
	status := func(args ...string) (int, string, string) {
		return runCLI(append([]string{"status", "--kubeconfig", kubeconfig, "-n", "apps"}, args...)...)
	}
	gitSync := func(what string, cond func(*v1alpha1.GitSyncStatus) bool) {
		t.Helper()
		poll.Until(t, what, func() bool {
			var ro v1alpha1.Rollout
			if err := admin.Get(ctx, types.NamespacedName{Namespace: "apps", Name: "reviews"}, &ro); err != nil {
				return false
			}
			return cond(ro.Status.GitSync)
		})
	}

	gitSync("v1 applied", func(g *v1alpha1.GitSyncStatus) bool { return g.InSync() && g.AppliedCommit == good })
	if code, out, errs := status("reviews", "--require-synced"); code != 0 || !strings.Contains(out, "in sync: head "+rolloutapi.ShortSHA(good)) {
		t.Fatalf("status in sync: exit %d\n%s\n%s", code, out, errs)
	}

	bad := push("reviews: setWeight 120", "v2", 120)
	gitSync("the bad push rejected on the Rollout", func(g *v1alpha1.GitSyncStatus) bool {
		return g != nil && g.HeadCommit == bad && g.Rejected != nil && g.Rejected.Commit == bad && g.AppliedCommit == good
	})
	code, out, errs := status("reviews", "--require-synced")
	for _, want := range []string{"NOT SYNCED: head commit " + rolloutapi.ShortSHA(bad) + " was rejected", "reviews.yaml:", "setWeight"} {
		if !strings.Contains(out, want) {
			t.Errorf("status after the bad push: no %q in\n%s", want, out)
		}
	}
	if code != exitNotSynced || !strings.Contains(errs, "was rejected") {
		t.Errorf("status --require-synced after the bad push: exit %d, stderr %q: want %d naming the rejection", code, errs, exitNotSynced)
	}
	if code, out, _ := status("--require-synced"); code != exitNotSynced || !strings.Contains(out, "rejected") {
		t.Errorf("status (all) --require-synced after the bad push: exit %d:\n%s", code, out)
	}

	fixed := push("reviews v2", "v2", 30)
	gitSync("the fix applied", func(g *v1alpha1.GitSyncStatus) bool { return g.InSync() && g.AppliedCommit == fixed })
	if code, out, errs := status("reviews", "--require-synced"); code != 0 || strings.Contains(out, "rejected") {
		t.Errorf("status after the fix: exit %d\n%s\n%s", code, out, errs)
	}
}
