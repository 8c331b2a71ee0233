package analysisrun

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/sluicehq/sluice/analysis"
)

// measurer wraps the Measurer for one reconcile of one run: it caps each
// measurement's timeout, times it for the metrics, and keeps the results,
// in the order taken, for persist to replay onto a fresh read after a
// write conflict.
type measurer struct {
	next       analysis.Measurer
	maxTimeout time.Duration

	mu    sync.Mutex
	taken []analysis.Result
}

// Measure takes q within min(q.Timeout, maxTimeout). The context deadline
// backs up the Measurer's own handling of q.Timeout, so that no
// measurement holds a worker longer, whatever the Measurer does.
func (m *measurer) Measure(ctx context.Context, q analysis.Query) analysis.Result {
	q.Timeout = min(cmp.Or(q.Timeout, analysis.DefaultTimeout), m.maxTimeout)
	ctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	start := time.Now()
	res := m.next.Measure(ctx, q)
	analysisSeries.ObserveMeasurement(time.Since(start), res.Err)
	// Advance sets the identity on what it records; the replay needs it
	// here too.
	res.Metric, res.Index = q.Metric, q.Index
	m.mu.Lock()
	m.taken = append(m.taken, res)
	m.mu.Unlock()
	return res
}

// results are the measurements taken so far. Advance takes a metric's
// measurements one round after another, so each metric's appear in index
// order, as Step needs to record them all.
func (m *measurer) results() []analysis.Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]analysis.Result(nil), m.taken...)
}
