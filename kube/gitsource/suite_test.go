package gitsource

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One envtest control plane (real kube-apiserver + etcd, Sluice's CRDs)
// serves every test; repositories are real bare repositories pushed to
// with the git CLI, read over file:// or smart HTTP.
var env = kubetest.NewEnv()

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	os.Exit(env.Run(m))
}

// controllerFor runs the GitSource controller (leader election off, so
// it is the leader) in a manager whose cache sees only namespaces: tests
// run in parallel against one API server, and each controller must keep
// to its own test's GitSources.
func controllerFor(t *testing.T, namespaces ...string) *gitapply.Sources {
	t.Helper()
	return controllerWith(t, nil, namespaces...)
}

// controllerWith is controllerFor with the Reconciler changed by mod (nil:
// as it is).
func controllerWith(t *testing.T, mod func(*Reconciler), namespaces ...string) *gitapply.Sources {
	t.Helper()
	cfg, scheme := env.Start(t)
	co := cache.Options{DefaultNamespaces: map[string]cache.Config{}}
	for _, ns := range namespaces {
		co.DefaultNamespaces[ns] = cache.Config{}
	}
	var sources *gitapply.Sources
	kubetest.RunManager(t, cfg, manager.Options{Scheme: scheme, Cache: co, HealthProbeBindAddress: "0"}, func(_ context.Context, mgr manager.Manager) error {
		sources = gitapply.NewSources(mgr.GetClient())
		r := &Reconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Sources: sources,
			StateDir: t.TempDir(), AllowFileURLs: true, Log: testr.New(t),
		}
		if mod != nil {
			mod(r)
		}
		return r.SetupWithManager(mgr)
	})
	return sources
}

// newGitSource creates a GitSource of url following main. It polls once
// an hour: every sync in these tests is one they asked for (creation, a
// requested sync, a webhook).
func newGitSource(t *testing.T, c client.Client, ns, name, url string, mod ...func(*v1alpha1.GitSource)) *v1alpha1.GitSource {
	t.Helper()
	gs := &v1alpha1.GitSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.GitSourceSpec{
			URL: url, Ref: v1alpha1.GitRef{Branch: "main"}, Path: "apps",
			Interval: &metav1.Duration{Duration: time.Hour},
		},
	}
	for _, m := range mod {
		m(gs)
	}
	if err := c.Create(context.Background(), gs); err != nil {
		t.Fatalf("create GitSource %s/%s: %v", ns, name, err)
	}
	return gs
}

// requestSync does what the webhook does: stamps the requested-sync
// annotation, which the controller's watch turns into a sync.
func requestSync(t *testing.T, c client.Client, ns, name string) {
	t.Helper()
	h := &Webhook{Client: c}
	if err := h.request(context.Background(), &v1alpha1.GitSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// waitReady waits until the GitSource's Ready condition has status and
// reason and its status is about its current generation; it returns the
// GitSource.
func waitReady(t *testing.T, c client.Client, ns, name string, status metav1.ConditionStatus, reason string, also func(*v1alpha1.GitSource) bool) *v1alpha1.GitSource {
	t.Helper()
	gs := &v1alpha1.GitSource{}
	ok := poll.Holds(poll.Timeout, poll.Interval, func() bool {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, gs); err != nil {
			return false
		}
		cond := readyCondition(gs)
		return cond != nil && cond.Status == status && cond.Reason == reason &&
			gs.Status.ObservedGeneration == gs.Generation && (also == nil || also(gs))
	})
	if !ok {
		t.Fatalf("GitSource %s/%s: want Ready=%s %s; status %+v", ns, name, status, reason, gs.Status)
	}
	return gs
}

func readyCondition(gs *v1alpha1.GitSource) *metav1.Condition {
	for i := range gs.Status.Conditions {
		if gs.Status.Conditions[i].Type == v1alpha1.GitSourceReady {
			return &gs.Status.Conditions[i]
		}
	}
	return nil
}

func get[T client.Object](t *testing.T, c client.Client, ns, name string, obj T) T {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("get %T %s/%s: %v", obj, ns, name, err)
	}
	return obj
}

func newRepo(t *testing.T, files map[string]string) (*gittest.Repo, string) {
	t.Helper()
	r := gittest.New(t)
	// git http-backend accepts pushes (write-back) only when told to.
	gittest.Git(t, r.Bare, "config", "http.receivepack", "true")
	return r, r.Push("first", files)
}

// rolloutYAML is a controller-mode Rollout of image; meta adds lines to
// its metadata (a namespace).
func rolloutYAML(name, image, meta string) string {
	return `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: ` + name + `
` + meta + `spec:
  replicas: 1
  service: {name: ` + name + `, hosts: [` + name + `], port: 9080}
  template:
    metadata:
      labels: {app: ` + name + `}
    spec:
      containers:
      - name: app
        image: ` + image + `
  strategy:
    canary:
      steps:
      - setWeight: 30
      - pause: {}
`
}

const templateYAML = `apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  metrics:
  - name: success-rate
    successCondition: result[0] >= 0.99
    provider:
      prometheus:
        query: sum(rate(requests_total{code!~"5.."}[1m]))
`
