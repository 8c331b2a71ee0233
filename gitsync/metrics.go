package gitsync

import (
	"errors"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on the caller's Registerer; several Syncers share
// one set of collectors, told apart by the source label.
type metrics struct {
	lastFetch     *prometheus.GaugeVec
	fetchDuration *prometheus.HistogramVec
	applied       *prometheus.GaugeVec
	appliedTime   *prometheus.GaugeVec
	errors        *prometheus.CounterVec
	current       *prometheus.GaugeVec
	objects       *prometheus.GaugeVec
	forcePushes   *prometheus.CounterVec
	writeBacks    *prometheus.CounterVec
	insecure      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lastFetch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gitsync_last_fetch_timestamp_seconds",
			Help: "Time of the last successful fetch.",
		}, []string{"source"}),
		fetchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_gitsync_fetch_duration_seconds",
			Help:    "Duration of fetches, successful or not.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"source"}),
		applied: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gitsync_last_applied_commit_info",
			Help: "The commit in force (value 1), by SHA.",
		}, []string{"source", "commit"}),
		appliedTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gitsync_last_applied_timestamp_seconds",
			Help: "Time the commit in force was applied.",
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gitsync_errors_total",
			Help: "Sync and write-back errors by kind.",
		}, []string{"source", "kind"}),
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gitsync_error",
			Help: "1 for the kind of the current sync error (until a sync succeeds), else 0.",
		}, []string{"source", "kind"}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gitsync_objects",
			Help: "Objects in the commit in force, by kind.",
		}, []string{"source", "kind"}),
		forcePushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gitsync_force_pushes_total",
			Help: "Times the followed ref moved to a commit that does not descend from the previous one.",
		}, []string{"source"}),
		writeBacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gitsync_write_backs_total",
			Help: "Git write-back requests by outcome (pushed, unchanged, superseded, removed, or an error kind).",
		}, []string{"source", "outcome"}),
		insecure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gitsync_insecure",
			Help: "1 when the source skips TLS or SSH host key verification.",
		}, []string{"source"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		var got prometheus.Collector
		got, err = register(reg, c)
		return got
	}
	m.lastFetch = reg1(m.lastFetch).(*prometheus.GaugeVec)
	m.fetchDuration = reg1(m.fetchDuration).(*prometheus.HistogramVec)
	m.applied = reg1(m.applied).(*prometheus.GaugeVec)
	m.appliedTime = reg1(m.appliedTime).(*prometheus.GaugeVec)
	m.errors = reg1(m.errors).(*prometheus.CounterVec)
	m.current = reg1(m.current).(*prometheus.GaugeVec)
	m.objects = reg1(m.objects).(*prometheus.GaugeVec)
	m.forcePushes = reg1(m.forcePushes).(*prometheus.CounterVec)
	m.writeBacks = reg1(m.writeBacks).(*prometheus.CounterVec)
	m.insecure = reg1(m.insecure).(*prometheus.GaugeVec)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector another Syncer
// registered first.
func register(reg prometheus.Registerer, c prometheus.Collector) (prometheus.Collector, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if reflect.TypeOf(are.ExistingCollector) == reflect.TypeOf(c) {
			return are.ExistingCollector, nil
		}
	}
	return c, err
}

func (m *metrics) init(source string, insecure bool) {
	for _, k := range AllErrorKinds {
		m.errors.WithLabelValues(source, string(k))
		m.current.WithLabelValues(source, string(k)).Set(0)
	}
	if insecure {
		m.insecure.WithLabelValues(source).Set(1)
	} else {
		m.insecure.WithLabelValues(source).Set(0)
	}
}

func (m *metrics) fetched(source string, start, end time.Time, ok bool) {
	m.fetchDuration.WithLabelValues(source).Observe(end.Sub(start).Seconds())
	if ok {
		m.lastFetch.WithLabelValues(source).Set(float64(end.UnixNano()) / 1e9)
	}
}

// syncFailed counts err and marks its kind as the current error.
func (m *metrics) syncFailed(source string, kind ErrorKind) {
	m.errors.WithLabelValues(source, string(kind)).Inc()
	m.setCurrent(source, kind)
}

func (m *metrics) setCurrent(source string, kind ErrorKind) {
	for _, k := range AllErrorKinds {
		v := 0.0
		if k == kind {
			v = 1
		}
		m.current.WithLabelValues(source, string(k)).Set(v)
	}
}

func (m *metrics) appliedCommit(source string, s *Snapshot, prev *Snapshot, at time.Time) {
	if prev != nil {
		m.applied.DeleteLabelValues(source, prev.Commit.SHA)
	}
	m.applied.WithLabelValues(source, s.Commit.SHA).Set(1)
	m.appliedTime.WithLabelValues(source).Set(float64(at.UnixNano()) / 1e9)
	counts := map[string]int{"Rollout": 0, "AnalysisTemplate": 0}
	for _, d := range s.Objects {
		counts[d.Kind()]++
	}
	for k, n := range counts {
		m.objects.WithLabelValues(source, k).Set(float64(n))
	}
}
