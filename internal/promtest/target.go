package promtest

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Target is an HTTP scrape target exposing request metrics in the shape
// Istio's sidecars report them: istio_requests_total and
// istio_request_duration_milliseconds (a histogram), labelled with
// reporter, destination_service_name, destination_service_namespace,
// destination_canonical_revision and response_code. Tests add Workloads
// whose traffic, error rate and latency they control.
type Target struct {
	// Addr is host:port, to scrape.
	Addr string

	srv      *http.Server
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu        sync.Mutex
	workloads []*Workload
	stop      chan struct{}
	stopped   sync.WaitGroup
}

// Labels common to both metrics, as Istio names them.
var istioLabels = []string{"reporter", "destination_service_name", "destination_service_namespace", "destination_canonical_revision", "response_code"}

// tick is how often workloads add requests; rps is their rate.
const (
	tick = 50 * time.Millisecond
	rps  = 100.0
)

// NewTarget starts a target on 127.0.0.1.
func NewTarget() (*Target, error) {
	reg := prometheus.NewRegistry()
	t := &Target{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total", Help: "Requests, as Istio's sidecars count them.",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_duration_milliseconds", Help: "Request duration in milliseconds.",
			// Istio's default buckets.
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
		}, istioLabels),
		stop: make(chan struct{}),
	}
	reg.MustRegister(t.requests, t.duration)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.Addr = l.Addr().String()
	t.srv = &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = t.srv.Serve(l) }()
	t.stopped.Add(1)
	go t.run()
	return t, nil
}

// Close stops the workloads and the server.
func (t *Target) Close() error {
	close(t.stop)
	t.stopped.Wait()
	return t.srv.Close()
}

func (t *Target) run() {
	defer t.stopped.Done()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.mu.Lock()
			ws := append([]*Workload(nil), t.workloads...)
			t.mu.Unlock()
			for _, w := range ws {
				w.serve(t)
			}
		}
	}
}

// Workload is the traffic of one revision of one service.
type Workload struct {
	Service, Namespace, Revision string

	mu        sync.Mutex
	errorRate float64
	latencyMs float64
	flapEvery int // ticks; 0: no flapping
	ticks     int
	errAcc    float64
	reqAcc    float64
}

// AddWorkload starts serving rps requests per second for a revision of a
// service, errorRate of them answered 500, each taking latencyMs.
func (t *Target) AddWorkload(service, namespace, revision string, errorRate, latencyMs float64) *Workload {
	w := &Workload{Service: service, Namespace: namespace, Revision: revision, errorRate: errorRate, latencyMs: latencyMs}
	// Both series exist from the start, as after a first error: a ratio
	// of errors to requests is then 0, not "no data".
	for _, code := range []string{"200", "500"} {
		t.requests.WithLabelValues(w.labels(code)...).Add(0)
	}
	t.mu.Lock()
	t.workloads = append(t.workloads, w)
	t.mu.Unlock()
	return w
}

// SetErrorRate changes the share of requests answered 500.
func (w *Workload) SetErrorRate(r float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errorRate = r
}

// Flap makes the error rate alternate between 0 and 2 × the set rate
// every period, so its average stays the set rate while no two scrapes see
// the same thing.
func (w *Workload) Flap(period time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flapEvery = max(1, int(period/tick))
}

func (w *Workload) labels(code string) []string {
	return []string{"destination", w.Service, w.Namespace, w.Revision, code}
}

func (w *Workload) serve(t *Target) {
	w.mu.Lock()
	rate := w.errorRate
	if w.flapEvery > 0 {
		if (w.ticks/w.flapEvery)%2 == 0 {
			rate = 0
		} else {
			rate = math.Min(1, 2*rate)
		}
	}
	w.ticks++
	// Accumulators keep fractional requests and errors, so the counts
	// follow the rates exactly over time.
	w.reqAcc += rps * tick.Seconds()
	n := math.Floor(w.reqAcc)
	w.reqAcc -= n
	w.errAcc += n * rate
	errs := math.Floor(w.errAcc)
	w.errAcc -= errs
	latency := w.latencyMs
	w.mu.Unlock()

	t.requests.WithLabelValues(w.labels("200")...).Add(n - errs)
	t.requests.WithLabelValues(w.labels("500")...).Add(errs)
	ok, bad := t.duration.WithLabelValues(w.labels("200")...), t.duration.WithLabelValues(w.labels("500")...)
	for i := 0; i < int(n); i++ {
		if i < int(errs) {
			bad.Observe(latency)
		} else {
			ok.Observe(latency)
		}
	}
}
