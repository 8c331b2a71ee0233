package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// segment is a stretch of a Rollout's life with one meaning: a step of a
// rollout, the end state after promotion or abort, or stable serving.
type segment struct {
	Kind     segmentKind
	Revision string // the canary revision; the stable one for kindStable
	Stable   string // the stable revision when the segment began
	// Step (kindStep): 0-based index, number of steps with promotion, label.
	Index, Total int
	Label        string
	// The traffic plan in force, and the canary's weight in it.
	Plan   string
	Weight int32
	// Started: first seen. Acked: first seen with its current plan
	// acknowledged by the data plane. Last: last seen unchanged. All on
	// this process's clock, which the load generator stamps calls with.
	Started, Acked, Last time.Time
	// Split counts the calls started in [Acked+guard, Last], when all of
	// them were routed by this segment's plan.
	Split grpcecho.Split
	// Runs are the step's analysis runs as last seen.
	Runs []v1alpha1.AnalysisRunStatus
	// Abort is why the rollout stopped (kindAborted).
	Abort *v1alpha1.AbortStatus
	// Status is the Rollout's status when the segment was last seen.
	Status v1alpha1.RolloutStatus
}

type segmentKind string

const (
	kindStep    segmentKind = "step"
	kindAborted segmentKind = "aborted"
	kindStable  segmentKind = "stable"
)

// follower polls a Rollout through Sluice's HTTP API (the same API
// `sluice status -w` reads) and cuts its life into segments, each with the
// traffic the load generator saw while it was in force.
type follower struct {
	client   *rolloutapi.Client
	ns, name string
	load     *grpcecho.Load
	// guard is left out of a window after its acknowledgement.
	guard time.Duration
	every time.Duration
	// ended is told about each segment when it ends; started about the
	// first step seen of each rollout.
	ended, started func(*segment)

	key  string
	cur  *segment
	prev *segment // the segment before cur
	Last rolloutapi.Rollout
}

// Until polls until done says so (after the segment bookkeeping of that
// poll) or ctx ends.
func (f *follower) Until(ctx context.Context, what string, done func(ro rolloutapi.Rollout, cur *segment) (bool, error)) error {
	err := poll(ctx, f.every, func() (bool, error) {
		ro, err := f.client.Get(ctx, f.ns, f.name)
		if err != nil {
			// The server may be busy; the deadline bounds the retries.
			return false, nil
		}
		f.observe(ro, time.Now())
		return done(ro, f.cur)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s (last status: %s %q): %w", what, f.Last.Status.Phase, f.Last.Status.Message, err)
	}
	return nil
}

// Close ends the current segment, measuring it up to its last poll, and
// returns it. The next poll continues in a new segment of the same kind,
// silently: nothing new started.
func (f *follower) Close() *segment {
	s := f.cur
	if s != nil {
		f.finish(s, f.Last)
		f.cur, f.prev = nil, s
	}
	return s
}

func (f *follower) observe(ro rolloutapi.Rollout, now time.Time) {
	f.Last = ro
	st := ro.Status
	key, kind := segmentKey(st)
	fresh := key != f.key
	if fresh && f.cur != nil {
		f.finish(f.cur, ro)
		f.prev, f.cur = f.cur, nil
	}
	f.key = key
	if f.cur == nil {
		s := &segment{Kind: kind, Revision: st.CanaryRevision, Stable: st.StableRevision, Started: now, Total: len(ro.Steps), Abort: st.Abort}
		if kind == kindStable {
			s.Revision = st.StableRevision
		}
		if kind == kindStep {
			s.Index = int(*st.CurrentStepIndex)
			s.Label = label(ro, s.Index)
		}
		if fresh {
			f.between(f.prev, s, ro)
		}
		f.cur = s
	}
	s := f.cur
	if s.Plan != st.Traffic.PlanVersion {
		// A new plan within the segment (the first step adds the canary
		// at 0% before routing to it): measure from its acknowledgement.
		s.Plan, s.Weight, s.Acked = st.Traffic.PlanVersion, st.Traffic.CanaryWeight, time.Time{}
	}
	if s.Acked.IsZero() && st.Traffic.PlanVersion != "" && st.Traffic.AcknowledgedVersion == st.Traffic.PlanVersion {
		s.Acked = now
	}
	s.Last, s.Status = now, st
	s.Runs = stepRuns(st, s)
}

// between reports what happened from prev to next: a rollout that
// started, and steps that began and ended between two polls (a setWeight
// ends as soon as the proxy acknowledges it, an analysis may fail at its
// first measurement).
func (f *follower) between(prev, next *segment, ro rolloutapi.Rollout) {
	prevStep := prev != nil && prev.Kind == kindStep
	from, to := 0, 0
	switch {
	case next.Kind == kindStep && prevStep && prev.Revision == next.Revision:
		from, to = prev.Index+1, next.Index
	case next.Kind == kindStep:
		if f.started != nil {
			f.started(next)
		}
		from, to = 0, next.Index
	case next.Kind == kindStable && prevStep && prev.Revision == next.Revision:
		// Promoted: the steps after prev, promotion included, are done.
		from, to = prev.Index+1, prev.Total
	case prevStep:
		// Stopped without promotion: up to the step it stopped at.
		from, to = prev.Index+1, stoppedAt(ro.Status, prev.Revision)+1
	}
	for i := from; i < to && f.ended != nil; i++ {
		s := &segment{Kind: kindStep, Revision: next.Revision, Stable: next.Stable, Index: i, Total: len(ro.Steps), Label: label(ro, i), Started: next.Started, Last: next.Started}
		if prevStep {
			s.Revision, s.Stable = prev.Revision, prev.Stable
		}
		s.Runs = stepRuns(ro.Status, s)
		f.ended(s)
	}
}

// stoppedAt is the step at which the rollout of revision stopped: the
// index an abort keeps, or, once the status moved on (Sluice applied its
// own revert commit), the last step that ran an analysis of it. -1 when
// neither says.
func stoppedAt(st v1alpha1.RolloutStatus, revision string) int {
	if st.Abort != nil && st.CurrentStepIndex != nil && st.CanaryRevision == revision {
		return int(*st.CurrentStepIndex)
	}
	last := -1
	for _, r := range st.Analysis {
		if r.StepIndex != nil && argOf(r, "canaryRevision") == revision {
			last = max(last, int(*r.StepIndex))
		}
	}
	return last
}

func label(ro rolloutapi.Rollout, i int) string {
	if i < len(ro.Steps) {
		return ro.Steps[i]
	}
	return fmt.Sprintf("step %d", i+1)
}

// finish measures a segment and reports it. next is the status that ended
// it, which holds the final verdict of the step's analysis.
func (f *follower) finish(s *segment, next rolloutapi.Rollout) {
	if runs := stepRuns(next.Status, s); len(runs) > 0 {
		s.Runs = runs
	}
	if !s.Acked.IsZero() {
		s.Split = f.load.Window(s.Acked.Add(f.guard), s.Last)
	}
	if f.ended != nil {
		f.ended(s)
	}
}

// segmentKey names the segment a status belongs to.
func segmentKey(st v1alpha1.RolloutStatus) (string, segmentKind) {
	switch {
	case st.Abort != nil:
		return fmt.Sprintf("aborted/%s/%d", st.CanaryRevision, st.Starts), kindAborted
	case st.CurrentStepIndex != nil:
		return fmt.Sprintf("step/%s/%d/%d", st.CanaryRevision, st.Starts, *st.CurrentStepIndex), kindStep
	default:
		return "stable/" + st.StableRevision, kindStable
	}
}

// stepRuns returns the analysis runs of s's step in st. Status keeps the
// runs of a rollout after it ended, until the next one starts.
func stepRuns(st v1alpha1.RolloutStatus, s *segment) []v1alpha1.AnalysisRunStatus {
	if s.Kind != kindStep {
		return nil
	}
	var out []v1alpha1.AnalysisRunStatus
	for _, r := range st.Analysis {
		if r.StepIndex != nil && int(*r.StepIndex) == s.Index && argOf(r, "canaryRevision") == s.Revision {
			out = append(out, r)
		}
	}
	return out
}

func argOf(r v1alpha1.AnalysisRunStatus, name string) string {
	for _, a := range r.Args {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}
