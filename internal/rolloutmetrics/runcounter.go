package rolloutmetrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// RunCounter is sluice_rollout_analysis_runs_total. Every kind and outcome
// of a Rollout exists from its first status on, at 0 (Record says why),
// which as a CounterVec is 20 children per Rollout, about 15 MiB at 1,000
// Rollouts for counters that are almost all 0. RunCounter keeps one small
// array per Rollout instead and makes the series when it is scraped.
type RunCounter struct {
	desc *prometheus.Desc

	mu     sync.Mutex
	counts map[[2]string]*runCounts
}

type runCounts [5][4]uint64 // [kind][outcome], in the order of kinds and outcomes

func newRunCounter() *RunCounter {
	return &RunCounter{
		desc: prometheus.NewDesc("sluice_rollout_analysis_runs_total",
			"Analysis runs that completed, by kind and outcome (Successful, Failed, Inconclusive, Error).",
			[]string{"namespace", "rollout", "kind", "phase"}, nil),
		counts: map[[2]string]*runCounts{},
	}
}

func index[T comparable](list []T, v T) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return -1
}

// ensure makes the Rollout's series, at 0; ns and name are labels already.
func (c *RunCounter) ensure(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts[[2]string{ns, name}] == nil {
		c.counts[[2]string{ns, name}] = &runCounts{}
	}
}

// inc counts one completed run. A kind or outcome the lists lack (an API
// newer than this package) is not counted rather than mislabelled.
func (c *RunCounter) inc(ns, name string, kind v1alpha1.AnalysisKind, phase v1alpha1.AnalysisPhase) {
	k, o := index(kinds, kind), index(outcomes, phase)
	if k < 0 || o < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.counts[[2]string{ns, name}]
	if a == nil {
		a = &runCounts{}
		c.counts[[2]string{ns, name}] = a
	}
	a[k][o]++
}

func (c *RunCounter) forget(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.counts, [2]string{ns, name})
}

// Value is the count of one series (tests); ns and name as given to Record.
func (c *RunCounter) Value(ns, name string, kind v1alpha1.AnalysisKind, phase v1alpha1.AnalysisPhase) float64 {
	k, o := index(kinds, kind), index(outcomes, phase)
	if k < 0 || o < 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.counts[[2]string{Label(ns), Label(name)}]; a != nil {
		return float64(a[k][o])
	}
	return 0
}

func (c *RunCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect copies the counts under the lock and makes the series outside
// it, so a slow scrape never holds up Record.
func (c *RunCounter) Collect(ch chan<- prometheus.Metric) {
	for _, e := range copyOut(&c.mu, c.counts) {
		for k, kind := range kinds {
			for o, outcome := range outcomes {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(e.v[k][o]),
					e.key[0], e.key[1], string(kind), string(outcome))
			}
		}
	}
}

// keyed is one Rollout's values (by namespace and name), copied.
type keyed[V any] struct {
	key [2]string
	v   V
}

// copyOut copies m's values under mu, so that a scrape makes its series
// outside the lock.
func copyOut[V any](mu *sync.Mutex, m map[[2]string]*V) []keyed[V] {
	mu.Lock()
	defer mu.Unlock()
	all := make([]keyed[V], 0, len(m))
	for key, v := range m {
		all = append(all, keyed[V]{key, *v})
	}
	return all
}
