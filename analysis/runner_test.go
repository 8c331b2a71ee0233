package analysis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

type fakeMeasurer struct {
	mu     sync.Mutex
	calls  []Query
	cancel context.CancelFunc // cancels the caller's context on the first call
	script script
}

func (f *fakeMeasurer) Measure(ctx context.Context, q Query) Result {
	f.mu.Lock()
	f.calls = append(f.calls, q)
	cancel := f.cancel
	f.mu.Unlock()
	if cancel != nil {
		cancel()
		<-ctx.Done()
		return Result{Metric: q.Metric, Index: q.Index, Err: ctx.Err()}
	}
	r := f.script.measure(q)
	// A careless measurer that does not echo the identity.
	r.Metric, r.Index = "", 0
	return r
}

func TestAdvance(t *testing.T) {
	t.Parallel()
	run := newRun(t, thresholdMetric("a"), thresholdMetric("b"))
	f := &fakeMeasurer{script: script{"a": {good}, "b": {good, good, bad}}}
	now := t0
	clock := func() time.Time { return now }
	for i := 0; !run.Status.Phase.Completed(); i++ {
		out, err := Advance(context.Background(), run, f, clock)
		if err != nil {
			t.Fatal(err)
		}
		if i > 10 {
			t.Fatal("run did not complete")
		}
		now = now.Add(out.RequeueAfter)
	}
	if run.Status.Phase != v1alpha1.AnalysisFailed || len(f.calls) != 6 {
		t.Fatalf("phase %s after %d measurements, want Failed after 6", run.Status.Phase, len(f.calls))
	}
}

// TestAdvanceCancelled: measurements cut short by the caller's context are
// dropped, not recorded as Errors, so a restart takes them again.
func TestAdvanceCancelled(t *testing.T) {
	t.Parallel()
	run := newRun(t, thresholdMetric("a"))
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeMeasurer{cancel: cancel}
	start := t0.Truncate(time.Second) // slot 0 is due at once
	if _, err := Advance(ctx, run, f, func() time.Time { return start }); err == nil {
		t.Fatal("Advance with a cancelled context returned no error")
	}
	r := run.Status.Metrics[0]
	if taken(&r) != 0 || run.Status.Phase != v1alpha1.AnalysisRunning {
		t.Fatalf("after cancellation: %+v", run.Status)
	}
	f2 := &fakeMeasurer{script: script{"a": {good}}}
	if _, err := Advance(context.Background(), run, f2, func() time.Time { return start.Add(time.Second) }); err != nil {
		t.Fatal(err)
	}
	if len(f2.calls) != 1 || f2.calls[0].Index != 0 || run.Status.Metrics[0].Successful != 1 {
		t.Fatalf("the dropped measurement was not taken again: calls %+v, status %+v", f2.calls, run.Status.Metrics[0])
	}
}
