package controller

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The benchmark's accounting of the work behind each reconcile: API
// requests by verb and resource, client-side rate-limiter waits, CPU and
// allocations. Unlike latency on a shared two-core machine, these do not
// depend on what else the machine runs.

// apiCounter records the requests a rest.Config's clients send, by verb
// and resource ("PATCH rollouts/status"), with how long each took until
// its response headers arrived (after any client-side rate-limiter wait,
// which happens before the transport). Install it with rest.Config.Wrap
// before any client is built from the config.
type apiCounter struct {
	mu   sync.Mutex
	took map[string][]time.Duration
}

func newAPICounter() *apiCounter { return &apiCounter{took: map[string][]time.Duration{}} }

func (a *apiCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		d := time.Since(start)
		if api, ok := req.Context().Value(apiTimeKey{}).(*atomic.Int64); ok {
			api.Add(int64(d))
		}
		kind := requestKind(req)
		a.mu.Lock()
		a.took[kind] = append(a.took[kind], d)
		a.mu.Unlock()
		return resp, err
	})
}

// apiTimeKey is the context key under which a reconcile (timed) collects
// the time its API requests took; the client passes the reconcile's
// context on to each request.
type apiTimeKey struct{}

// reset forgets what was recorded so far.
func (a *apiCounter) reset() {
	a.mu.Lock()
	a.took = map[string][]time.Duration{}
	a.mu.Unlock()
}

func (a *apiCounter) requests() map[string][]time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.took)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requestKind names a request the way the API server's audit log does:
// the Kubernetes verb (GET of one object, LIST, WATCH, POST, PUT, PATCH,
// DELETE) and the resource with its subresource.
func requestKind(req *http.Request) string {
	// /api/v1/namespaces/ns/services/name, /apis/group/version/..., with
	// an optional namespace, name and subresource.
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return req.Method + " " + req.URL.Path
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	resource, named := "namespaces", false
	if len(parts) > 0 {
		resource, named = parts[0], len(parts) > 1
	}
	if len(parts) > 2 {
		resource += "/" + parts[2]
	}
	verb := req.Method
	switch {
	case verb == http.MethodGet && req.URL.Query().Get("watch") == "true":
		verb = "WATCH"
	case verb == http.MethodGet && !named:
		verb = "LIST"
	}
	return verb + " " + resource
}

// perReconcile reports the requests per reconcile: in total, by verb,
// and the API time per reconcile as metrics; by verb and resource, with
// their latency, in the log.
func perReconcile(b *testing.B, requests map[string][]time.Duration, reconciles int) {
	b.Helper()
	if reconciles == 0 {
		return
	}
	byVerb := map[string]int{"GET": 0, "LIST": 0, "POST": 0, "PUT": 0, "PATCH": 0, "DELETE": 0}
	total := 0
	var spent time.Duration
	var lines []string
	for kind, took := range requests {
		verb, _, _ := strings.Cut(kind, " ")
		if verb == "WATCH" {
			// Long-lived; a re-established watch is not work per reconcile.
			continue
		}
		n := len(took)
		byVerb[verb] += n
		total += n
		slices.Sort(took)
		var sum time.Duration
		for _, d := range took {
			sum += d
		}
		spent += sum
		lines = append(lines, fmt.Sprintf("%-28s %7d %7.3f/reconcile  mean %6.1f ms  p50 %6.1f ms  p99 %7.1f ms",
			kind, n, float64(n)/float64(reconciles), ms(sum/time.Duration(n)), ms(percentile(took, 0.50)), ms(percentile(took, 0.99))))
	}
	slices.Sort(lines)
	b.Logf("API requests during the rollout (%d reconciles):\n%s", reconciles, strings.Join(lines, "\n"))
	b.ReportMetric(float64(total)/float64(reconciles), "req/reconcile")
	b.ReportMetric(ms(spent)/float64(reconciles), "api-ms/reconcile")
	for verb, n := range byVerb {
		b.ReportMetric(float64(n)/float64(reconciles), strings.ToLower(verb)+"/reconcile")
	}
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// usage is the process's CPU time and allocations at one moment.
type usage struct {
	cpu           time.Duration
	mallocs, heap uint64
}

func usageNow(b *testing.B) usage {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{
		cpu:     time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		mallocs: ms.Mallocs,
		heap:    ms.TotalAlloc,
	}
}

// since is what the process used from u until now.
func (u usage) since(b *testing.B) usage {
	now := usageNow(b)
	return usage{cpu: now.cpu - u.cpu, mallocs: now.mallocs - u.mallocs, heap: now.heap - u.heap}
}

// enableRateLimiterMetric turns on client-go's
// rest_client_rate_limiter_duration_seconds in controller-runtime's
// registry (off by default).
func enableRateLimiterMetric() {
	crmetrics.RegisterRESTClientMetrics(crmetrics.MetricRateLimiterLatency)
}

// rateLimiterWait is the total time requests waited for client-side rate
// limiters, and how many waited at all, so far. Clients without a limiter
// (QPS < 0) record nothing.
func rateLimiterWait(b *testing.B) (total time.Duration, requests uint64) {
	b.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		b.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "rest_client_rate_limiter_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			total += time.Duration(h.GetSampleSum() * float64(time.Second))
			requests += h.GetSampleCount()
		}
	}
	return total, requests
}

// managerRestConfig is a copy of cfg for the manager in the benchmark, with
// the client-side rate limit under test and every request counted.
func managerRestConfig(cfg *rest.Config, qps float32, burst int, count *apiCounter) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = qps, burst
	cfg.Wrap(count.wrap)
	return cfg
}

// rsEvents counts the ReplicaSet events the manager's informer delivers:
// each may enqueue its owning Rollout.
type rsEvents struct {
	mu                             sync.Mutex
	created, spec, status, deleted int
}

func watchReplicaSets(b *testing.B, mgr ctrl.Manager) *rsEvents {
	b.Helper()
	inf, err := mgr.GetCache().GetInformer(context.Background(), &appsv1.ReplicaSet{})
	if err != nil {
		b.Fatal(err)
	}
	e := &rsEvents{}
	count := func(n *int) {
		e.mu.Lock()
		*n++
		e.mu.Unlock()
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { count(&e.created) },
		UpdateFunc: func(o, n any) {
			old, cur := o.(*appsv1.ReplicaSet), n.(*appsv1.ReplicaSet)
			if equality.Semantic.DeepEqual(old.Spec, cur.Spec) && equality.Semantic.DeepEqual(old.Labels, cur.Labels) &&
				equality.Semantic.DeepEqual(old.Annotations, cur.Annotations) {
				count(&e.status)
				return
			}
			count(&e.spec)
		},
		DeleteFunc: func(any) { count(&e.deleted) },
	})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func (e *rsEvents) reset() {
	e.mu.Lock()
	e.created, e.spec, e.status, e.deleted = 0, 0, 0, 0
	e.mu.Unlock()
}

func (e *rsEvents) get() (created, spec, status, deleted int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.created, e.spec, e.status, e.deleted
}
