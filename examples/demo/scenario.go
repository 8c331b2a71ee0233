package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// stage is what the scenario needs running: backends, the Git repository,
// Sluice, and the load generator calling through Sluice's xDS.
type stage struct {
	Backends map[string]*grpcecho.Backend // by version
	Repo     *gitRepo
	API      *rolloutapi.Client
	Load     *grpcecho.Load
	Print    *printer
	// Settle is how long the end state of each act is watched, to show
	// (and let tests check) where the traffic went.
	Settle time.Duration
}

// act is one release as the scenario saw it.
type act struct {
	Version, Commit string
	// Started is set once a step of its rollout was seen.
	Started bool
	Steps   []*segment
	// End is the state after the rollout: kindStable after a promotion,
	// kindAborted after an abort.
	End *segment
}

// report is everything the scenario observed, for the tests.
type report struct {
	Baseline *segment // v1 serving alone
	Good     act      // v2: promoted
	Bad      act      // v3: aborted
	// Abort is the event of the abort.
	Abort rolloutapi.Event
	// Revert is the commit Sluice pushed after the abort, and the
	// Rollout file it left in Git.
	RevertHash, RevertAuthor, RevertMessage, RevertedFile string
	// Restored is the stable state once Sluice applied its own revert.
	Restored *segment
}

// The quickstart's Rollout (and service), in the default namespace of
// `sluice run`.
const (
	namespace = "default"
	rollout   = "echo"
)

// guard is left out of each measured window after Sluice reports a plan
// acknowledged: grpc-go ACKs a route update before its resolver has
// swapped the route table in, usually by microseconds, on a loaded machine
// by more.
const guard = 400 * time.Millisecond

// run plays the demo: v1 serves; v2 is released and promoted; v3 is
// released, fails its analysis, and is rolled back in traffic and in Git.
func (s *stage) run(ctx context.Context) (*report, error) {
	rep := &report{}
	var cur *act
	f := &follower{client: s.API, ns: namespace, name: rollout, load: s.Load, guard: guard, every: 50 * time.Millisecond}
	f.started = func(seg *segment) {
		if cur != nil && seg.Revision == cur.Version {
			cur.Started = true
			s.Print.RolloutStarted(seg)
		}
	}
	f.ended = func(seg *segment) {
		if cur != nil && seg.Kind == kindStep && seg.Revision == cur.Version {
			cur.Steps = append(cur.Steps, seg)
			s.Print.Step(seg)
		}
	}

	if err := f.Until(ctx, "v1 to serve, acknowledged by the load generator", settled(kindStable, "v1", s.Settle)); err != nil {
		return rep, err
	}
	rep.Baseline = f.Close()
	s.Print.Baseline(rep.Baseline)

	// v2: every step passes; promoted.
	cur = &rep.Good
	if err := s.release(ctx, cur, "v2"); err != nil {
		return rep, err
	}
	err := f.Until(ctx, "v2 to be promoted", func(ro rolloutapi.Rollout, seg *segment) (bool, error) {
		if ro.Status.Abort != nil {
			return false, fmt.Errorf("the rollout of v2 was aborted: %s", ro.Status.Abort.Message)
		}
		if err := unexpectedPause(ro); err != nil {
			return false, err
		}
		return settled(kindStable, "v2", s.Settle)(ro, seg)
	})
	if err != nil {
		return rep, err
	}
	cur.End = f.Close()
	s.Print.Promoted(cur.End)

	// v3: fails its analysis; Sluice aborts, and reverts Git.
	cur = &rep.Bad
	if err := s.release(ctx, cur, "v3"); err != nil {
		return rep, err
	}
	err = f.Until(ctx, "v3 to be rolled back", func(ro rolloutapi.Rollout, seg *segment) (bool, error) {
		if ro.Status.StableRevision == "v3" {
			return false, fmt.Errorf("v3 was promoted; its analysis should have failed")
		}
		if err := unexpectedPause(ro); err != nil {
			return false, err
		}
		// Back to v2 alone: aborted, or already Healthy again if Sluice
		// applied its own revert commit within a poll (it can be that fast).
		if !cur.Started || seg.Kind == kindStep {
			return false, nil
		}
		return settled(seg.Kind, seg.Revision, s.Settle)(ro, seg)
	})
	if err != nil {
		return rep, err
	}
	cur.End = f.Close()
	if err := s.printAbort(ctx, rep); err != nil {
		return rep, err
	}
	s.Print.BackToStable(cur.End)

	if err := s.waitRevert(ctx, rep); err != nil {
		return rep, err
	}
	// Sluice applies its own commit: the spec names the stable revision.
	err = f.Until(ctx, "the revert commit to be applied", func(ro rolloutapi.Rollout, seg *segment) (bool, error) {
		g := ro.Status.Git
		if g == nil || !strings.HasPrefix(g.Commit, rep.RevertHash) || ro.Status.Phase != v1alpha1.PhaseHealthy {
			return false, nil
		}
		return settled(kindStable, "v2", 0)(ro, seg)
	})
	if err != nil {
		return rep, err
	}
	rep.Restored = f.Close()
	s.Print.Restored(rep.Restored)
	return rep, nil
}

// printAbort finds the abort in the Rollout's history: the status may
// have moved on before a poll saw it.
func (s *stage) printAbort(ctx context.Context, rep *report) error {
	evs, err := s.API.History(ctx, namespace, rollout, 50)
	if err != nil {
		return fmt.Errorf("history of %s: %w", rollout, err)
	}
	for _, e := range evs {
		if e.Reason == v1alpha1.ReasonAnalysisFailed {
			rep.Abort = e
		}
	}
	if rep.Abort.Reason == "" {
		return fmt.Errorf("no %s event in the history of %s", v1alpha1.ReasonAnalysisFailed, rollout)
	}
	s.Print.Aborted(rep.Abort)
	return nil
}

// release pushes a version and says so.
func (s *stage) release(ctx context.Context, a *act, version string) error {
	b := s.Backends[version]
	a.Version = version
	msg := fmt.Sprintf("echo: release %s", version)
	hash, err := s.Repo.Release(ctx, version, b.Addr, msg)
	if err != nil {
		return fmt.Errorf("release %s: %w", version, err)
	}
	a.Commit = hash
	s.Print.Pushed(hash, msg)
	return nil
}

// waitRevert waits for Sluice's revert commit in the Git server.
func (s *stage) waitRevert(ctx context.Context, rep *report) error {
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		hash, author, msg, err := s.Repo.Head(ctx)
		if err != nil {
			return false, err
		}
		if author != sluiceAuthor {
			return false, nil
		}
		rep.RevertHash, rep.RevertAuthor, rep.RevertMessage = hash, author, msg
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for Sluice's revert commit: %w", err)
	}
	if rep.RevertedFile, err = s.Repo.Show(ctx, rolloutFile); err != nil {
		return err
	}
	log, err := s.Repo.Log(ctx, 3)
	if err != nil {
		return err
	}
	s.Print.Reverted(rep.RevertMessage, log)
	return nil
}

// unexpectedPause fails the demo when the rollout waits for a person (an
// Inconclusive analysis, say): nobody is there to promote.
func unexpectedPause(ro rolloutapi.Rollout) error {
	if p := ro.Status.Pause; p != nil {
		return fmt.Errorf("the rollout of %s paused (%s): %s", ro.Status.CanaryRevision, p.Reason, p.Message)
	}
	return nil
}

// settled is true once the Rollout is in a segment of that kind and
// revision whose plan has been acknowledged for at least d.
func settled(kind segmentKind, revision string, d time.Duration) func(rolloutapi.Rollout, *segment) (bool, error) {
	return func(_ rolloutapi.Rollout, seg *segment) (bool, error) {
		return seg != nil && seg.Kind == kind && seg.Revision == revision && !seg.Acked.IsZero() && seg.Last.Sub(seg.Acked) >= d+guard, nil
	}
}
