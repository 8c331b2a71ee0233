package manager_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/kube/manager"
)

// world is everything around the controllers under test: the API server
// with Sluice's RBAC, the Git repository, a real gRPC backend per image,
// a real Prometheus scraping them, the test's kubelet, and the recorder.
type world struct {
	t *testing.T
	// ns is the application's namespace, where Git's objects go.
	ns       string
	m        manifests
	admin    client.WithWatch
	ctrlCfg  *rest.Config
	repo     *gittest.Repo
	prom     *promtest.Server
	backends map[string]*grpcecho.Backend // by image tag
	revs     map[string]string            // image tag → revision
	tags     map[string]string            // revision → image tag
	kubelet  *kubelet
	rec      *recorder
	// logs is the test's log file, behind logSink: the replicas and
	// client-go log there; the test prints its end when it fails.
	logs *os.File
}

// failPercent is how often each image's backend fails: v3 is the bad
// release its analysis must catch.
var failPercent = map[string]int{"v1": 0, "v2": 0, "v3": 50}

func newWorld(t *testing.T) *world {
	t.Helper()
	admin, ctrlCfg := cluster(t)
	ctx := context.Background()
	// A namespace of its own: envtest has no namespace controller, so
	// another run against the same API server (-count) must not meet
	// this one's objects.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shop-"}}
	if err := admin.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ns: ns.Name, m: manifestsFor(ns.Name), admin: admin, ctrlCfg: ctrlCfg, backends: map[string]*grpcecho.Backend{},
		revs: map[string]string{}, tags: map[string]string{}}
	logs, err := os.Create(filepath.Join(t.TempDir(), "controllers.log"))
	if err != nil {
		t.Fatal(err)
	}
	w.logs = logs
	logSink.set(logs)
	t.Cleanup(func() {
		logSink.set(nil)
		logs.Close()
	})

	w.startBackends(t)

	// The Git source is real: a bare repository on disk, which the
	// controllers clone over file:// and push their revert commits to.
	w.repo = gittest.New(t)
	w.repo.Push("shop: echo v1", w.m.initial())

	w.kubelet = &kubelet{c: admin, ns: w.ns, backends: w.backends, applied: map[string]string{}}
	w.rec = newRecorder(admin, w.ns, w.m.host)
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.kubelet.run(bg) })
	wg.Go(func() { w.rec.run(bg) })
	t.Cleanup(func() { stop(); wg.Wait() })
	// Runs after the replicas stopped (cleanups run last first), on the
	// complete log.
	t.Cleanup(func() {
		w.checkAuthorized(t)
		if t.Failed() {
			t.Logf("history:\n%s\nkubelet's last error: %s\ncontroller logs (last lines):\n%s", w.rec.describe(), w.kubelet.err(), w.logTail())
		}
	})
	return w
}

// startBackends starts a backend per image, labelled with the revision
// of the Rollout running it, and a Prometheus scraping them all.
func (w *world) startBackends(t *testing.T) {
	t.Helper()
	var targets []string
	ip := podIP(t)
	for tag, fail := range failPercent {
		rev := w.m.revisionOf(t, tag)
		b, err := grpcecho.Start(grpcecho.Options{Service: rolloutName, Version: tag, FailPercent: fail, Host: ip, Labels: map[string]string{"revision": rev}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		w.backends[tag], w.revs[tag], w.tags[rev] = b, rev, tag
		targets = append(targets, b.MetricsAddr)
	}
	prom, err := promtest.Start(testbin.Path(t, "prometheus"), targets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	w.prom = prom
	// Prometheus applies its targets a few seconds after it is ready; an
	// analysis before the first scrapes would find no data.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scraped := func(v []float64) bool { return len(v) == 1 && v[0] == float64(len(targets)) }
	if err := promtest.WaitQuery(ctx, prom.URL, "count(up == 1)", scraped); err != nil {
		t.Fatalf("%v\n%s", err, prom.Logs())
	}
}

// podIP is the address the backends, standing in for pods, listen on:
// the API server refuses loopback addresses in an EndpointSlice.
func podIP(t *testing.T) string {
	t.Helper()
	ip, err := grpcecho.PodAddress()
	if err != nil {
		testbin.SkipOrFail(t, err.Error())
	}
	return ip
}

// config is the controller's configuration file, as a user would write
// it, for one replica: its own state directory, the test's Git repository
// and Prometheus, and timings short enough for a test (leases of seconds,
// Git polled every second).
func (w *world) config(stateDir string) *manager.Config {
	w.t.Helper()
	cfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: %[1]s
defaultNamespace: %[2]s
stateDir: %[3]s
leaderElection:
  leaseDuration: 4s
  renewDeadline: 3s
  retryPeriod: 250ms
http:
  metricsAddress: "0"
  probeAddress: "0"
  webhookAddress: "0"
xds:
  address: 127.0.0.1:0
  # The load's proxyless clients dial plaintext; authentication has its
  # own tests (xdsauth_test.go, kube/xdsauth).
  insecurePlaintext: true
prometheus:
  address: %[4]s
reconcile:
  ackPollInterval: 200ms
git:
  url: %[5]s
  branch: main
  path: %[6]s
  interval: 1s
  writeBack:
    authorName: %[7]s
    authorEmail: sluice@example.com
`, controllerNamespace, w.ns, stateDir, w.prom.URL, w.repo.URL(), deployPath, sluiceAuthor))
	if err != nil {
		w.t.Fatalf("controller configuration: %v", err)
	}
	return cfg
}

// sluiceAuthor signs the controllers' revert commits.
const sluiceAuthor = "Sluice"

// logger writes to the current test's log file, at Info, under name.
func logger(name string) logr.Logger {
	return logr.FromSlogHandler(slog.NewTextHandler(&logSink, &slog.HandlerOptions{Level: slog.LevelInfo})).WithName(name)
}

// logSink is where every logger of the test writes: the current test's
// log file. Loggers outlive a test: controller-runtime takes its global
// logger once per process (the first manager.New sets it; later calls
// change nothing), and client-go's klog is global too, so both write here
// and the file behind it changes with each test.
var logSink switchWriter

type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
}

// Write drops what is logged between tests.
func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return len(p), nil
	}
	return s.w.Write(p)
}

// replica is one running `sluice controller`.
type replica struct {
	name    string
	c       *manager.Controller
	reg     *prometheus.Registry
	xdsAddr string
	// stop cancels the replica's context, as SIGTERM does, and waits until
	// Start returned: every leader-only part has stopped and the lease is
	// released.
	stop func()
}

// startReplica builds and starts a controller as `sluice controller`
// would, with the controller's service account, its own xDS listener on
// 127.0.0.1 and its own metrics registry.
func (w *world) startReplica(name string) *replica {
	w.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := w.config(w.t.TempDir())
	cfg.XDS.ReplicaName = name // unique, as a pod's name is
	reg := prometheus.NewRegistry()
	c, err := manager.New(manager.Options{
		Config:             cfg,
		RestConfig:         w.ctrlCfg,
		Log:                logger(name),
		Registerer:         reg,
		XDSListener:        lis,
		SkipNameValidation: true,
	})
	if err != nil {
		lis.Close()
		w.t.Fatalf("replica %s: %v", name, err)
	}
	r := &replica{name: name, c: c, reg: reg, xdsAddr: lis.Addr().String()}
	r.stop = kubetest.Start(w.t, "replica "+name, c)
	return r
}

// elected reports whether the replica holds the lease.
func (r *replica) elected() bool {
	select {
	case <-r.c.Elected():
		return true
	default:
		return false
	}
}

// checkAuthorized fails the test for every request of the controllers
// that the API server refused for want of a permission: a part that only
// logs such an error (an informer, an Event) would otherwise hide an RBAC
// gap that the generated role must close.
func (w *world) checkAuthorized(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(w.logs.Name())
	if err != nil {
		t.Error(err)
		return
	}
	var refused []string
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, "forbidden") {
			refused = append(refused, strings.TrimSpace(line))
		}
	}
	if len(refused) > 0 {
		t.Errorf("the API server refused the controller %d times (crds/rbac/role.yaml lacks a permission), first:\n%s",
			len(refused), strings.Join(refused[:min(5, len(refused))], "\n"))
	}
}

// logTail is the end of the controllers' log file, for a failing test.
func (w *world) logTail() string {
	data, err := os.ReadFile(w.logs.Name())
	if err != nil {
		return err.Error()
	}
	const keep = 256 << 10
	if len(data) > keep {
		data = data[len(data)-keep:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}
