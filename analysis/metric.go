package analysis

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/analysis/condition"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Defaults for fields a metric leaves out; docs/api.md lists the same.
const (
	DefaultInterval              = time.Minute
	DefaultTimeout               = 30 * time.Second
	DefaultConsecutiveErrorLimit = 4
	DefaultCompareWindow         = 5 * time.Minute
	DefaultCompareStep           = 15 * time.Second
	DefaultConfidence            = 0.95
	// MaxHistory is how many measurements a metric keeps in status; the
	// counters cover the rest.
	MaxHistory = 10
	// maxComparePoints keeps a compare window within what Prometheus
	// returns for one range query (11,000 points per series).
	maxComparePoints = 11000
)

// metric is a metric of a run with its defaults applied, its conditions
// compiled and its query rendered.
type metric struct {
	spec                  *v1alpha1.Metric
	interval, delay       time.Duration
	timeout               time.Duration
	count                 int32 // 0: until the run is stopped
	failureLimit          int32
	inconclusiveLimit     int32
	consecutiveErrorLimit int32
	success, failure      *condition.Condition
	// query is the rendered query of a threshold metric.
	query string
	// compare is set for compare metrics.
	compare *compareMetric
}

type compareMetric struct {
	stable, canary string // rendered queries
	window, step   time.Duration
	alpha          float64 // 1 - confidence
	direction      v1alpha1.CompareDirection
}

// compile prepares every metric of a run. It fails on anything that would
// make a measurement impossible: a missing argument, an unsafe value, a
// condition that does not compile.
func compile(spec *v1alpha1.AnalysisRunSpec) ([]metric, error) {
	args := make(map[string]string, len(spec.Args))
	for _, a := range spec.Args {
		args[a.Name] = a.Value
	}
	out := make([]metric, len(spec.Metrics))
	for i := range spec.Metrics {
		m, err := compileMetric(&spec.Metrics[i], args)
		if err != nil {
			return nil, fmt.Errorf("metric %q: %w", spec.Metrics[i].Name, err)
		}
		out[i] = m
	}
	return out, nil
}

func compileMetric(s *v1alpha1.Metric, args map[string]string) (metric, error) {
	m := metric{
		spec:                  s,
		interval:              durationOr(s.Interval, DefaultInterval),
		delay:                 durationOr(s.InitialDelay, 0),
		count:                 int32Or(s.Count, 0),
		failureLimit:          int32Or(s.FailureLimit, 0),
		inconclusiveLimit:     int32Or(s.InconclusiveLimit, 0),
		consecutiveErrorLimit: int32Or(s.ConsecutiveErrorLimit, DefaultConsecutiveErrorLimit),
		timeout:               DefaultTimeout,
	}
	if m.interval <= 0 {
		return m, fmt.Errorf("interval %s must be positive", m.interval)
	}
	prom := s.Provider.Prometheus
	if prom == nil {
		return m, fmt.Errorf("no provider: set provider.prometheus")
	}
	if prom.Timeout != nil && prom.Timeout.Duration > 0 {
		m.timeout = prom.Timeout.Duration
	}
	var err error
	if s.SuccessCondition != "" {
		if m.success, err = compileCondition(s.SuccessCondition); err != nil {
			return m, fmt.Errorf("successCondition: %w", err)
		}
	}
	if s.FailureCondition != "" {
		if m.failure, err = compileCondition(s.FailureCondition); err != nil {
			return m, fmt.Errorf("failureCondition: %w", err)
		}
	}
	if s.Compare == nil {
		if m.success == nil && m.failure == nil {
			return m, fmt.Errorf("set successCondition, failureCondition or compare")
		}
		m.query, err = Render(prom.Query, args)
		return m, err
	}
	if m.success != nil || m.failure != nil {
		return m, fmt.Errorf("compare judges on its own: remove successCondition and failureCondition")
	}
	m.compare, err = compileCompare(s.Compare, prom.Query, args)
	return m, err
}

func compileCompare(c *v1alpha1.MetricCompare, query string, args map[string]string) (*compareMetric, error) {
	cm := &compareMetric{
		window:    durationOr(c.Window, DefaultCompareWindow),
		step:      durationOr(c.Step, DefaultCompareStep),
		alpha:     1 - DefaultConfidence,
		direction: c.Direction,
	}
	if cm.direction == "" {
		cm.direction = v1alpha1.CompareIncrease
	}
	switch cm.direction {
	case v1alpha1.CompareIncrease, v1alpha1.CompareDecrease, v1alpha1.CompareEither:
	default:
		return nil, fmt.Errorf("compare.direction %q must be Increase, Decrease or Either", cm.direction)
	}
	if c.Confidence != "" {
		conf, err := strconv.ParseFloat(c.Confidence, 64)
		if err != nil || conf <= 0 || conf >= 1 {
			return nil, fmt.Errorf("compare.confidence %q must be a fraction between 0 and 1, e.g. 0.95", c.Confidence)
		}
		cm.alpha = 1 - conf
	}
	switch {
	case cm.window <= 0 || cm.step <= 0:
		return nil, fmt.Errorf("compare.window and compare.step must be positive")
	case cm.step > cm.window:
		return nil, fmt.Errorf("compare.step %s is longer than compare.window %s", cm.step, cm.window)
	case cm.window/cm.step >= maxComparePoints:
		return nil, fmt.Errorf("compare.window %s / compare.step %s gives more than %d points", cm.window, cm.step, maxComparePoints)
	}
	var err error
	for _, side := range []struct {
		dst              *string
		subset, revision string
	}{
		{&cm.stable, "stable", "stableRevision"},
		{&cm.canary, "canary", "canaryRevision"},
	} {
		sideArgs := make(map[string]string, len(args)+2)
		for k, v := range args {
			sideArgs[k] = v
		}
		sideArgs[ArgSubset] = side.subset
		if sub, ok := args[side.revision[:len(side.revision)-len("Revision")]+"Subset"]; ok {
			// The step's baseline or candidate, when it names one.
			sideArgs[ArgSubset] = sub
		}
		if rev, ok := args[side.revision]; ok {
			sideArgs[ArgRevision] = rev
		}
		if *side.dst, err = Render(query, sideArgs); err != nil {
			return nil, err
		}
	}
	if cm.stable == cm.canary {
		return nil, fmt.Errorf("the query is the same for stable and canary: tell them apart with {{args.%s}} or {{args.%s}}", ArgRevision, ArgSubset)
	}
	return cm, nil
}

// Compiling a condition takes far longer than evaluating it, and Step
// would otherwise compile every condition of a run on every call. The cache
// only ever holds what Compile would return, so it does not affect results.
var (
	condMu    sync.Mutex
	condCache = map[string]*condition.Condition{}
)

const condCacheMax = 1024

func compileCondition(expr string) (*condition.Condition, error) {
	condMu.Lock()
	c, ok := condCache[expr]
	condMu.Unlock()
	if ok {
		return c, nil
	}
	c, err := condition.Compile(expr)
	if err != nil {
		return nil, err
	}
	condMu.Lock()
	if len(condCache) >= condCacheMax {
		clear(condCache)
	}
	condCache[expr] = c
	condMu.Unlock()
	return c, nil
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

func int32Or(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}
