package runner

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc/interop/grpc_testing"

	promanalysis "github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/standalone/store"
	"github.com/sluicehq/sluice/xds"
)

// stratWorld is `sluice run` wired inside the test, as cmd/sluice wires
// it: a real Git repository read by gitsync, the runner, the real xDS
// server behind an XDSPlane (no acknowledgement without clients) and the
// analysis driver measuring with a real Prometheus. Clients are grpc-go's
// own xDS clients (internal/xdstest, internal/grpcecho) and raw ADS
// streams (stratADS); backends are grpcecho's echo servers.
type stratWorld struct {
	t     *testing.T
	repo  *gittest.Repo
	sync  *gitsync.Syncer
	r     *Runner
	xds   string // the xDS server's address
	clock *stratClock
	spec  string // of every revision pushed
}

// stratClock is the runner's clock: real time plus an offset the test
// moves forward, so a long pause or dark-release duration passes at once
// while what is timed in real time (ACKs, RPCs, Prometheus) keeps its pace.
type stratClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *stratClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *stratClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// stratStart starts Sluice on a repository whose first commit holds the
// reviews Rollout at revision v1, served by backend v1, with spec (the
// strategy and further spec fields, as YAML indented under spec) and, when
// promURL is set (the Prometheus of templates naming no provider), the
// error-ratio template. It returns once v1 is stable.
func stratStart(t *testing.T, promURL, spec string, v1 *grpcecho.Backend) *stratWorld {
	t.Helper()
	w := &stratWorld{t: t, repo: gittest.New(t), clock: &stratClock{}, spec: spec}
	files := map[string]string{"reviews.yaml": stratRollout("v1", v1.Addr, spec)}
	if promURL != "" {
		files["analysis.yaml"] = stratErrorRatio
	}
	w.repo.Push("initial", files)
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() }) // after the runner stops (cleanups run last first)
	eps := xds.NewStatic()
	srv, err := xds.New(xds.Options{Endpoints: eps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	w.xds = lis.Addr().String()
	w.sync, err = gitsync.New(gitsync.Source{URL: w.repo.URL(), Branch: "main", Interval: time.Second},
		gitsync.Options{MirrorDir: filepath.Join(dir, "git")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var providers []promanalysis.Provider
	if promURL != "" {
		providers = []promanalysis.Provider{{Name: promanalysis.DefaultProvider, Address: promURL}}
	}
	driver := NewAnalysisDriver(ctx, promanalysis.New(promanalysis.Options{Providers: providers}), w.clock.Now, testr.New(t))
	w.r, err = New(Options{Store: st, Source: w.sync, Plane: NewXDSPlane(ctx, srv, eps), Analysis: driver,
		Log: testr.New(t), Now: w.clock.Now})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ctx, lis); err != nil {
			t.Errorf("xDS server: %v", err)
		}
	})
	wg.Go(func() { _ = w.sync.Run(ctx) })
	wg.Go(func() {
		if err := w.r.Run(ctx); err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		driver.Wait()
	})
	waitFor(t, w.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	return w
}

// ship pushes revision v2, served by backend v2, with the same spec, and
// tells gitsync, as a webhook would.
func (w *stratWorld) ship(v2 *grpcecho.Backend) {
	w.t.Helper()
	w.repo.Push("ship v2", map[string]string{"reviews.yaml": stratRollout("v2", v2.Addr, w.spec)})
	w.sync.Trigger()
}

// client is a proxyless gRPC client of xds:///reviews.
func (w *stratWorld) client() grpc_testing.TestServiceClient {
	w.t.Helper()
	c, _ := xdstest.Client(w.t, w.xds, "tester", "reviews")
	return c
}

// waitPromoted waits until v2 is stable and the rollout over.
func (w *stratWorld) waitPromoted() rolloutapi.Rollout {
	w.t.Helper()
	return waitFor(w.t, w.r, "v2 promoted", func(ro rolloutapi.Rollout) bool {
		return ro.Status.StableRevision == "v2" && ro.Status.CanaryRevision == ""
	})
}

// get is the rollout "reviews" as the API shows it.
func (w *stratWorld) get() rolloutapi.Rollout {
	w.t.Helper()
	ro, err := w.r.Get(context.Background(), "default", "reviews")
	if err != nil {
		w.t.Fatal(err)
	}
	return ro
}

// command sends a command and fails unless the engine applied it.
func (w *stratWorld) command(kind v1alpha1.CommandKind) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := w.r.Command(ctx, "default", "reviews", rolloutapi.CommandRequest{Kind: kind, By: "tester"})
	if err != nil || resp.Refused {
		w.t.Fatalf("%s: %+v, %v", kind, resp, err)
	}
}

// load starts a load generator on xds:///target through the world's xDS
// server, stopped when the test ends.
func (w *stratWorld) load(nodeID, target string, rate int) *grpcecho.Load {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := grpcecho.StartLoad(ctx, grpcecho.LoadOptions{XDSAddr: w.xds, Target: target, Rate: rate, NodeID: nodeID})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(l.Stop)
	return l
}

// stratBackend runs one revision of the reviews service, answering with
// its version; failPercent of its calls fail with UNAVAILABLE.
func stratBackend(t *testing.T, version string, failPercent int) *grpcecho.Backend {
	t.Helper()
	b, err := grpcecho.Start(grpcecho.Options{Service: "reviews", Version: version, FailPercent: failPercent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// stratPrometheus runs a real Prometheus scraping the backends' request
// counters every second. Prometheus takes its targets a few seconds after
// it is ready; scraped waits until it has every backend's series, so
// callers do their own setup meanwhile.
func stratPrometheus(t *testing.T, bs ...*grpcecho.Backend) (url string, scraped func()) {
	t.Helper()
	targets := make([]string, len(bs))
	for i, b := range bs {
		targets[i] = b.MetricsAddr
	}
	prom, err := promtest.Start(testbin.Path(t, "prometheus"), targets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	return prom.URL, func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		q := fmt.Sprintf(`count(%s{service="reviews"})`, grpcecho.MetricName)
		if err := promtest.WaitQuery(ctx, prom.URL, q, func(v []float64) bool { return len(v) == 1 && v[0] == float64(2*len(bs)) }); err != nil {
			t.Fatal(err)
		}
	}
}

// stratRollout is the reviews Rollout serving version at addr, with the
// strategy (and any further spec fields) given as YAML indented under
// spec.
func stratRollout(version, addr, spec string) string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  backend: {version: %s, endpoints: [%q]}
%s`, version, addr, spec)
}

// stratErrorRatio is an AnalysisTemplate judging the share of the canary
// revision's calls that failed, from the backends' own counters: at most
// 1% succeeds, more than 5% fails. A canary without calls yet reads NaN,
// an Error the consecutive-error limit tolerates: no data is never
// success.
const stratErrorRatio = `apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-ratio
spec:
  metrics:
  - name: error-ratio
    initialDelay: 1s
    interval: 1s
    count: 2
    consecutiveErrorLimit: 10
    successCondition: result[0] <= 0.01
    failureCondition: result[0] > 0.05
    provider:
      prometheus:
        query: |
          (sum(rate(demo_rpcs_total{service="{{args.service}}", version="{{args.canaryRevision}}", code!="OK"}[4s])) or vector(0))
          /
          sum(rate(demo_rpcs_total{service="{{args.service}}", version="{{args.canaryRevision}}"}[4s]))
`

// stratShare fails unless version served a share of the n calls counted
// inside the 99.9% binomial interval of percent, and nothing else served.
func stratShare(t *testing.T, counts map[string]int, n int, version string, other string, percent int32) {
	t.Helper()
	if counts[version]+counts[other] != n {
		t.Fatalf("served by %v, want %d calls from %s and %s", counts, n, version, other)
	}
	lo, hi := binomial.Interval(n, float64(percent)/100, 0.001)
	if c := counts[version]; c < lo || c > hi {
		t.Errorf("%s served %d of %d at %d%%; the 99.9%% interval is [%d, %d]", version, c, n, percent, lo, hi)
	}
}

// stratClean fails if s holds a byte a terminal or a log would act on.
func stratClean(t *testing.T, what, s string) {
	t.Helper()
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		t.Errorf("%s holds a control character at %d: %q", what, i, s)
	}
}
