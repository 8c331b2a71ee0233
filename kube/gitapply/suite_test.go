package gitapply

import (
	"context"
	"os"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One envtest control plane (real kube-apiserver + etcd) with Sluice's and
// Istio's CRDs serves every test of the package. Git repositories are real
// too: a bare repository made and pushed to with the git CLI, read by the
// Syncer over file://.
var env = &kubetest.Env{
	Scheme: []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, istio.AddToScheme},
	CRDs: func() ([]string, error) {
		crds, err := kubetest.IstioCRDs()
		return []string{filepath.Join("..", "..", "crds"), crds}, err
	},
}

func TestMain(m *testing.M) {
	// The end-to-end test runs a manager; its log would drown what the
	// tests say.
	ctrl.SetLogger(logr.Discard())
	os.Exit(env.Run(m))
}

// cluster returns a client of the shared API server; it skips the test
// when the binaries are missing, and fails instead with CI=true.
func cluster(t *testing.T) client.Client { return env.Client(t) }

func namespace(t *testing.T, c client.Client) string { return kubetest.Namespace(t, c, "sluice-git-") }

// repo is a Git repository the Applier follows (internal/gittest).
type repo = gittest.Repo

func newRepo(t *testing.T) *repo { return gittest.New(t) }

// fixture is a namespace of the shared API server and a repository whose
// first commit holds the test's files.
type fixture struct {
	c     client.Client
	ns    string
	r     *repo
	first string
}

func newFixture(t *testing.T, files map[string]string) fixture {
	t.Helper()
	c := cluster(t)
	r := newRepo(t)
	return fixture{c: c, ns: namespace(t, c), r: r, first: r.Push("first", files)}
}

// reviews is the commit most tests start from: the reviews Rollout and
// its AnalysisTemplate.
func reviews() map[string]string {
	return map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "", "reviews:v1"), "apps/analysis.yaml": templateYAML}
}

// newApplier makes an Applier of r. The source polls once an hour: tests
// sync with Trigger, so every sync is one they asked for.
func newApplier(t *testing.T, c client.Client, r *repo, ns string, mod ...func(*Options)) *Applier {
	t.Helper()
	opts := Options{
		Source:           gitsync.Source{URL: r.URL(), Branch: "main", Interval: time.Hour},
		Sync:             gitsync.Options{MirrorDir: t.TempDir(), Registerer: prometheus.NewRegistry()},
		DefaultNamespace: ns,
		WriteBack:        true,
		Log:              testr.New(t),
	}
	for _, m := range mod {
		m(&opts)
	}
	a, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// run starts a until the test ends, or until stop is called.
func run(t *testing.T, a *Applier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	var once gosync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Applier.Start: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// start makes an Applier of r and runs it until the test ends.
func start(t *testing.T, c client.Client, r *repo, ns string, mod ...func(*Options)) *Applier {
	t.Helper()
	a := newApplier(t, c, r, ns, mod...)
	run(t, a)
	return a
}

// syncTo asks the Applier's Syncer to fetch and waits until the applier has
// applied commit sha (or, for a rejected commit, until Git says so).
func syncTo(t *testing.T, a *Applier, sha string) State {
	t.Helper()
	a.Syncer().Trigger()
	return eventually(t, "commit "+sha+" applied", func() (State, bool) {
		st := a.State()
		return st, st.Commit == sha || st.Git.Head == sha && st.Git.Err != nil
	})
}

// eventually polls cond until it holds, with a generous timeout.
func eventually[T any](t *testing.T, what string, cond func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, ok := cond()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %+v", what, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get[T client.Object](t *testing.T, c client.Client, ns, name string, obj T) T {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("get %T %s/%s: %v", obj, ns, name, err)
	}
	return obj
}

// Manifests of the tests, as a team would keep them.

// rolloutYAML is a controller-mode Rollout of image; ns "" leaves the
// namespace to the default. It names the reviews VirtualService and
// DestinationRule.
func rolloutYAML(name, ns, image string) string {
	meta := "  name: " + name + "\n"
	if ns != "" {
		meta += "  namespace: " + ns + "\n"
	}
	return `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
` + meta + `  labels: {team: books}
  annotations: {owner: books@example.com}
spec:
  replicas: 2
  service:
    name: reviews
    hosts: [reviews]
    port: 9080
    virtualService: {name: reviews, routes: [reviews]}
    destinationRule: {name: reviews}
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
      - analysis:
          templates:
          - name: success-rate
      - pause: {}
  rollback:
    gitRevert: true
`
}

const templateYAML = `apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  metrics:
  - name: success-rate
    interval: 10s
    successCondition: result[0] >= 0.99
    provider:
      prometheus:
        query: sum(rate(requests_total{code!~"5.."}[1m])) / sum(rate(requests_total[1m]))
`

// istioYAML declares the reviews VirtualService (a "debug" route Sluice
// does not manage, with debugTimeout, and the managed "reviews" route) and
// DestinationRule, plus a "ratings" VirtualService no Rollout names.
func istioYAML(debugTimeout string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: debug
    match:
    - headers:
        x-debug: {exact: "1"}
    route:
    - destination: {host: reviews, subset: stable}
    timeout: ` + debugTimeout + `
  - name: reviews
    route:
    - destination: {host: reviews, subset: stable}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: stable
  - name: canary
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: ratings
  labels: {app: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
    retries: {attempts: 2}
`
}
