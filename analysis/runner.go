package analysis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Measurer takes measurements. analysis/prometheus implements it.
type Measurer interface {
	// Measure takes the measurement q describes, within q.Timeout. Every
	// failure is reported in Result.Err, which makes the measurement an
	// Error; Measure must return promptly once ctx is done.
	Measure(ctx context.Context, q Query) Result
}

// maxRounds bounds the measurements one Advance takes per metric, so that
// a run far behind its schedule (after a long outage) catches up in slices
// and its progress gets persisted in between.
const maxRounds = 20

// maxParallel bounds concurrent queries of one run.
const maxParallel = 8

// Advance is the loop around Step for callers that persist the run
// themselves (the Kubernetes reconciler, the standalone runner): it steps
// the run at now(), takes the due measurements with m (the metrics' in
// parallel), steps again with the results, and repeats while measurements
// are due, up to a bound. run.Status is updated in place.
//
// It returns the last Step's Output: call again after RequeueAfter, or at
// once if Queries is non-empty (the bound was hit). If ctx ends while
// measuring, the results of that round are dropped, not recorded as
// Errors: the measurements are taken again on the next call, so stopping
// the process never skips or spoils one.
func Advance(ctx context.Context, run *v1alpha1.AnalysisRun, m Measurer, now func() time.Time) (Output, error) {
	out := Step(Input{Run: run, Now: now()})
	run.Status = out.Status
	for round := 0; len(out.Queries) > 0 && round < maxRounds; round++ {
		results := measureAll(ctx, m, out.Queries)
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("analysis run %s/%s: %w", run.Namespace, run.Name, err)
		}
		out = Step(Input{Run: run, Results: results, Now: now()})
		run.Status = out.Status
	}
	return out, nil
}

func measureAll(ctx context.Context, m Measurer, qs []Query) []Result {
	results := make([]Result, len(qs))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = m.Measure(ctx, q)
			// The measurer must echo the identity; setting it here keeps
			// a careless implementation from recording into another slot.
			results[i].Metric, results[i].Index = q.Metric, q.Index
		}()
	}
	wg.Wait()
	return results
}
