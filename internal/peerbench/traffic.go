package peerbench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TrafficSide is a control plane in the traffic benchmarks (push →
// traffic, SLO breach → 0% canary): it routes the proxyless gRPC clients
// (GRPCClients) of the echo service between its stable revision v1 and a
// canary v2, each a grpcecho.Backend on this machine, and it is told of a release
// the way its users tell it: a git push for Sluice, a server-side apply
// for Argo Rollouts (what Argo CD or Flux sends after its poll).
type TrafficSide interface {
	// Name names it in benchmark and log names.
	Name() string
	// Start brings the control plane up with v1 released and serving,
	// for a release of v2 with plan's steps. It returns the plaintext
	// xDS address and the name the clients call (xds:///target).
	Start(ctx context.Context, plan ReleasePlan) (xdsAddr, target string, err error)
	// Node is client i's xDS node.
	Node(i int) GRPCNode
	// Release releases v2 and returns when the user's own action
	// returned (git push; kubectl apply), with that moment: what the
	// benchmarks time from.
	Release(ctx context.Context) (time.Time, error)
	// Aborted reports whether the rollout of v2 was aborted by its
	// analysis, or what it is in instead.
	Aborted(ctx context.Context) (bool, string, error)
	// Stop stops what Start started.
	Stop()
}

// ReleasePlan is the canary both products run in a traffic benchmark:
// 50% to v2 at once, then either a pause with no end (push → traffic) or
// an analysis of v2's error ratio every Interval, failing on its first
// measurement over 5% (SLO breach).
type ReleasePlan struct {
	Analysis bool
	// Interval between measurements of the analysis.
	Interval time.Duration
	// RateWindow is the analysis query's rate window (ErrorRatioQuery).
	RateWindow time.Duration
	// Scrape is Prometheus's scrape interval.
	Scrape time.Duration
	// PrometheusURL is the one Prometheus both products query.
	PrometheusURL string
	// Backends run the revisions, by version (v1, v2).
	Backends map[string]*grpcecho.Backend
}

// CanaryWeight is the canary's weight in the traffic benchmarks.
const CanaryWeight = 50

// ErrorThreshold is the analysis's limit on the canary's error ratio.
const ErrorThreshold = 0.05

// AnalysisCount bounds the measurements of one analysis run: more than
// a benchmark run lasts, so the run measures until it fails.
const AnalysisCount = 10000

// ErrorRatioQuery is the PromQL both products' analyses run: the share
// of v2's calls that failed over the last window, from the counters the
// grpcecho backends export, scraped every second by the one Prometheus. A
// window without calls to v2 reads 0, not 0/0: the analysis starts as
// soon as v2 has its weight, before Prometheus has scraped a call, and
// Argo Rollouts judges NaN Inconclusive, which would pause its rollout
// instead of measuring on (Sluice would count an Error).
func ErrorRatioQuery(window time.Duration) string {
	w := fmt.Sprintf("%dms", window.Milliseconds())
	if window%time.Second == 0 {
		w = fmt.Sprintf("%ds", int(window.Seconds()))
	}
	sel := `demo_rpcs_total{service="echo",version="v2"`
	return fmt.Sprintf(`((sum(rate(%s,code!="OK"}[%s])) or vector(0)) / (sum(rate(%s}[%s])) > 0)) or vector(0)`, sel, w, sel, w)
}

// RateWindow is the query's rate window by default: a few 1 s scrapes,
// as short as reads several samples (PEERBENCH_RATE_WINDOW changes it,
// with PEERBENCH_SCRAPE_INTERVAL).
const RateWindow = 5 * time.Second

// yamlQuote is s as a double-quoted YAML string (JSON's escaping is a
// subset YAML reads).
func yamlQuote(s string) string {
	return fmt.Sprintf("%q", s)
}

// noRateLimit is a copy of cfg without a client-side rate limit: the
// harness's own requests are not what is measured.
func noRateLimit(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = -1
	return cfg
}

// CanaryTimes is what a side on Kubernetes knows of the harness's part
// in a release: when the harness first saw a ReplicaSet of image asking
// for replicas, and when it first published that ReplicaSet's available
// replicas as endpoints (zero: not yet). It splits push → traffic into
// the controller's reaction, the harness's kubelet, and what follows.
type CanaryTimes interface {
	CanaryTimes(image string) (seen, published time.Time)
}

// rsTimes records CanaryTimes by image.
type rsTimes struct {
	mu              sync.Mutex
	seen, published map[string]time.Time
}

func (t *rsTimes) mark(m *map[string]time.Time, image string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if *m == nil {
		*m = map[string]time.Time{}
	}
	if _, ok := (*m)[image]; !ok {
		(*m)[image] = time.Now()
	}
}

func (t *rsTimes) see(image string)     { t.mark(&t.seen, image) }
func (t *rsTimes) publish(image string) { t.mark(&t.published, image) }

func (t *rsTimes) CanaryTimes(image string) (seen, published time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen[image], t.published[image]
}

// AnalysisTimes is what a side's product records of the measurement that
// failed its analysis: the time it gives that measurement (Sluice: the
// slot the query was evaluated for, whole seconds by construction;
// Argo Rollouts: the measurement's startedAt, truncated to the second),
// zero while none failed. It places the product's measurement between
// Prometheus having the failures and the abort.
type AnalysisTimes interface {
	FailedMeasurement(ctx context.Context) (time.Time, error)
}

// firstFailed is the slot of the first Failed measurement among ms.
func firstFailed(ms []v1alpha1.Measurement) time.Time {
	for _, m := range ms {
		if m.Phase == v1alpha1.AnalysisFailed {
			return m.At.Time
		}
	}
	return time.Time{}
}
