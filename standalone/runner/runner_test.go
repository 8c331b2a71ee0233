package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/standalone/store"
)

// ackingPlane acknowledges every published plan at once, like a data plane
// whose proxies are all healthy.
type ackingPlane struct {
	mu        sync.Mutex
	published map[string]bool
	history   [][]plan.Plan
	changed   chan struct{}
}

func newAckingPlane() *ackingPlane {
	return &ackingPlane{published: map[string]bool{}, changed: make(chan struct{}, 1)}
}

func (a *ackingPlane) SetPlans(_ context.Context, ps []plan.Plan) error {
	a.mu.Lock()
	for _, p := range ps {
		if err := p.Check(); err != nil {
			a.mu.Unlock()
			return err
		}
		a.published[p.Version] = true
	}
	a.history = append(a.history, ps)
	a.mu.Unlock()
	select {
	case a.changed <- struct{}{}:
	default:
	}
	return nil
}

func (a *ackingPlane) Observe(p plan.Plan) engine.DataPlane {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.published[p.Version] {
		return engine.DataPlane{Version: p.Version, State: engine.AckAcknowledged}
	}
	return engine.DataPlane{}
}

func (a *ackingPlane) Changed() <-chan struct{} { return a.changed }

func (a *ackingPlane) first() []plan.Plan {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.history[0]
}

// verdictAnalyzer ends every run with a fixed verdict.
type verdictAnalyzer struct {
	mu      sync.Mutex
	verdict v1alpha1.AnalysisPhase
	runs    map[string]engine.AnalysisRun
	changed chan struct{}
}

func newVerdictAnalyzer(v v1alpha1.AnalysisPhase) *verdictAnalyzer {
	return &verdictAnalyzer{verdict: v, runs: map[string]engine.AnalysisRun{}, changed: make(chan struct{}, 1)}
}

func (v *verdictAnalyzer) Start(_ string, run engine.AnalysisRun, templates []*v1alpha1.AnalysisTemplate, _ json.RawMessage) error {
	if len(templates) != len(run.Templates) {
		return fmt.Errorf("templates not resolved: %d of %d", len(templates), len(run.Templates))
	}
	v.mu.Lock()
	v.runs[run.Name] = run
	v.mu.Unlock()
	select {
	case v.changed <- struct{}{}:
	default:
	}
	return nil
}

func (v *verdictAnalyzer) Stop(string) {}

func (v *verdictAnalyzer) Observe(name string) (engine.AnalysisObservation, json.RawMessage, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.runs[name]; !ok {
		return engine.AnalysisObservation{}, nil, false
	}
	return engine.AnalysisObservation{Name: name, Phase: v.verdict, Message: "error-rate 0.31 > 0.05"}, json.RawMessage(`{"measured":1}`), true
}

func (v *verdictAnalyzer) Changed() <-chan struct{} { return v.changed }

// reviewsRollout is the Rollout reviews of version, served at endpoint;
// rest is the remainder of its spec (indented under spec:), and may add
// more documents.
func reviewsRollout(version, endpoint, rest string) string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service:
    name: reviews
    hosts: [reviews]
    port: 9080
  backend:
    version: %s
    endpoints: [%q]
`, version, endpoint) + rest
}

// canaryWithAnalysis is the spec push gives reviews: a weight, an
// analysis, a weight, and a revert in Git after an abort.
const canaryWithAnalysis = `  rollback:
    gitRevert: true
  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis:
          templates: [{name: success-rate}]
      - setWeight: 60
---
apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  metrics:
  - name: error-rate
    interval: 1s
    count: 1
    failureCondition: result[0] > 0.05
    provider:
      prometheus:
        address: http://127.0.0.1:9090
        query: sum(rate(requests_total{code=~"5..",service="{{args.service}}"}[1m]))
`

type fixture struct {
	t *testing.T
	// syncer, once started, is triggered after each push, as a webhook
	// would.
	syncer   *gitsync.Syncer
	work     string // a clone we push from
	remote   string
	stateDir string
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{t: t, remote: filepath.Join(root, "remote.git"), work: filepath.Join(root, "work"), stateDir: filepath.Join(root, "state")}
	git(t, root, "init", "-q", "--bare", "-b", "main", f.remote)
	git(t, root, "clone", "-q", f.remote, f.work)
	f.push("v1", 9001, "initial")
	return f
}

func (f *fixture) push(version string, port int, msg string) {
	f.t.Helper()
	f.pushManifest(reviewsRollout(version, fmt.Sprintf("127.0.0.1:%d", port), canaryWithAnalysis), msg)
}

// pushManifest commits manifest as reviews.yaml and pushes it.
func (f *fixture) pushManifest(manifest, msg string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.work, "reviews.yaml"), []byte(manifest), 0o644); err != nil {
		f.t.Fatal(err)
	}
	git(f.t, f.work, "add", "-A")
	git(f.t, f.work, "commit", "-q", "-m", msg)
	git(f.t, f.work, "push", "-q", "origin", "HEAD:main")
	f.trigger()
}

func (f *fixture) trigger() {
	if f.syncer != nil {
		f.syncer.Trigger()
	}
}

type started struct {
	st     *store.Store
	r      *Runner
	syncer *gitsync.Syncer
	plane  *ackingPlane
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *fixture) start(verdict v1alpha1.AnalysisPhase) *started {
	f.t.Helper()
	return f.startWith(verdict, nil)
}

// startWith starts a runner whose options edit may change (a Reverter in
// front of the syncer, a Notifier).
func (f *fixture) startWith(verdict v1alpha1.AnalysisPhase, edit func(*Options)) *started {
	f.t.Helper()
	st, err := store.Open(filepath.Join(f.stateDir, "state.db"), store.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	syncer, err := gitsync.New(
		gitsync.Source{URL: "file://" + f.remote, Branch: "main", Interval: time.Second},
		gitsync.Options{MirrorDir: filepath.Join(f.stateDir, "git"), WriteBack: gitsync.WriteBackOptions{AuthorName: "sluice", AuthorEmail: "sluice@example.com"}},
	)
	if err != nil {
		f.t.Fatal(err)
	}
	f.syncer = syncer
	plane := newAckingPlane()
	o := Options{Store: st, Source: syncer, Reverter: syncer, Plane: plane, Analysis: newVerdictAnalyzer(verdict), Log: testr.New(f.t)}
	if edit != nil {
		edit(&o)
	}
	r, err := New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{st: st, r: r, syncer: syncer, plane: plane, cancel: cancel, done: make(chan struct{})}
	go func() { _ = syncer.Run(ctx) }()
	go func() {
		defer close(s.done)
		if err := r.Run(ctx); err != nil {
			f.t.Errorf("Run: %v", err)
		}
	}()
	f.t.Cleanup(s.stop)
	return s
}

// stop ends the runner and releases the state file, as a process exit would.
func (s *started) stop() {
	s.cancel()
	<-s.done
	_ = s.st.Close()
}

// waitFor polls the API until cond holds for the rollout.
func waitFor(t *testing.T, b rolloutapi.Backend, what string, cond func(rolloutapi.Rollout) bool) rolloutapi.Rollout {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last rolloutapi.Rollout
	for time.Now().Before(deadline) {
		ro, err := b.Get(context.Background(), "default", "reviews")
		if err == nil {
			last = ro
			if cond(ro) {
				return ro
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last status: phase %s, %s", what, last.Status.Phase, last.Status.Message)
	return last
}

func TestRunnerPromotesAndResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.start(v1alpha1.AnalysisSuccessful)
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })

	f.push("v2", 9002, "ship v2")
	ro := waitFor(t, s.r, "v2 promoted", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v2" })
	if ro.Status.Phase != v1alpha1.PhaseHealthy || ro.Plan == nil || ro.Plan.Revision(plan.Stable) != "v2" {
		t.Fatalf("after promotion: phase %s, plan %+v", ro.Status.Phase, ro.Plan)
	}
	if ro.Status.Git == nil || ro.Status.Git.Commit != git(t, f.work, "rev-parse", "HEAD") || ro.Status.Git.Path != "reviews.yaml" {
		t.Fatalf("provenance = %+v", ro.Status.Git)
	}
	hist, err := s.r.History(context.Background(), "default", "reviews", 100)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range hist {
		reasons = append(reasons, e.Reason)
	}
	for _, want := range []string{"NewRevisionDetected", "AnalysisStarted", "AnalysisSuccessful", "RolloutPromoted"} {
		if !strings.Contains(strings.Join(reasons, ","), want) {
			t.Errorf("history lacks %s: %v", want, reasons)
		}
	}
	servedBefore := ro.Plan.Version
	s.stop()

	// A restart serves the stored plan before it does anything else.
	s2 := f.start(v1alpha1.AnalysisSuccessful)
	waitFor(t, s2.r, "restart", func(rolloutapi.Rollout) bool { return true })
	if first := s2.plane.first(); len(first) != 1 || first[0].Version != servedBefore {
		t.Fatalf("first plans served after restart = %+v, want the stored plan %s", first, servedBefore)
	}
}

func TestRunnerAbortsAndRevertsInGit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.start(v1alpha1.AnalysisFailed)
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	f.push("v3", 9003, "ship v3")
	ro := waitFor(t, s.r, "abort", func(ro rolloutapi.Rollout) bool { return ro.Status.Phase == v1alpha1.PhaseDegraded })
	if ro.Plan.Hosts[0].Weight(plan.Canary) != 0 || !strings.Contains(ro.Status.Message, "error-rate 0.31") {
		t.Fatalf("after abort: weight %d, message %q", ro.Plan.Hosts[0].Weight(plan.Canary), ro.Status.Message)
	}
	// The revert commit lands on the remote, Git then names v1 again, and
	// the engine ends the rollout: Git never claims what is not serving.
	ro = waitFor(t, s.r, "revert applied", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseHealthy && ro.Status.CanaryRevision == ""
	})
	git(t, f.work, "pull", "-q", "origin", "main")
	data, err := os.ReadFile(filepath.Join(f.work, "reviews.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "version: v1") || !strings.Contains(string(data), "127.0.0.1:9001") {
		t.Fatalf("reverted file does not name v1:\n%s", data)
	}
	if msg := git(t, f.work, "log", "-1", "--format=%B"); !strings.Contains(msg, "reviews") || !strings.Contains(msg, "v3") {
		t.Fatalf("revert commit message %q does not name the rollout and the failed revision", msg)
	}
	if ro.Status.StableRevision != "v1" {
		t.Fatalf("stable = %s", ro.Status.StableRevision)
	}
	if lr := ro.Status.LastRollout; lr == nil || lr.Outcome != v1alpha1.OutcomeAborted || lr.Revision != "v3" {
		t.Fatalf("last rollout after the revert = %+v; the abort must stay visible", lr)
	}
	ro = waitFor(t, s.r, "revert recorded", func(ro rolloutapi.Rollout) bool {
		return ro.Status.GitRevert != nil && ro.Status.GitRevert.Phase == v1alpha1.GitRevertDone
	})
	if g := ro.Status.GitRevert; g.Outcome != "pushed" || g.FailedRevision != "v3" || g.Attempts != 1 || g.Failures != 0 {
		t.Fatalf("gitRevert = %+v, want one attempt that pushed", g)
	}
}

func TestRunnerCommandsAndRemoval(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.start(v1alpha1.AnalysisRunning) // analysis never finishes: the rollout waits at step 2
	waitFor(t, s.r, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	f.push("v2", 9002, "ship v2")
	waitFor(t, s.r, "analysis step", func(ro rolloutapi.Rollout) bool {
		return ro.Status.CurrentStepIndex != nil && *ro.Status.CurrentStepIndex == 1 && ro.Status.StepAcknowledgedAt != nil
	})
	ctx := context.Background()
	resp, err := s.r.Command(ctx, "default", "reviews", rolloutapi.CommandRequest{Kind: v1alpha1.CommandPause, By: "alice"})
	if err != nil || resp.Refused || resp.Result != "paused" {
		t.Fatalf("pause = %+v, %v", resp, err)
	}
	if ro, _ := s.r.Get(ctx, "default", "reviews"); ro.Status.Phase != v1alpha1.PhasePaused || ro.Status.LastCommand.By != "alice" {
		t.Fatalf("after pause: phase %s, last command %+v", ro.Status.Phase, ro.Status.LastCommand)
	}
	resp, err = s.r.Command(ctx, "default", "reviews", rolloutapi.CommandRequest{Kind: v1alpha1.CommandRetry, By: "alice"})
	if err != nil || !resp.Refused {
		t.Fatalf("retry while not aborted = %+v, %v; want refused", resp, err)
	}
	if _, err := s.r.Command(ctx, "default", "nope", rolloutapi.CommandRequest{Kind: v1alpha1.CommandAbort}); err == nil {
		t.Fatal("command for an unknown rollout succeeded")
	}

	// Removing the Rollout from Git mid-rollout leaves its traffic at 100%
	// stable (v1: the canary was never promoted).
	git(t, f.work, "rm", "-q", "reviews.yaml")
	if err := os.WriteFile(filepath.Join(f.work, "README"), []byte("nothing here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, f.work, "add", "-A")
	git(t, f.work, "commit", "-q", "-m", "remove reviews")
	git(t, f.work, "push", "-q", "origin", "HEAD:main")
	f.trigger()
	ro := waitFor(t, s.r, "retired", func(ro rolloutapi.Rollout) bool { return strings.Contains(ro.Status.Message, "removed from Git") })
	if ro.Plan == nil || len(ro.Plan.Subsets) != 1 || ro.Plan.Hosts[0].Weight(plan.Stable) != 100 || ro.Plan.Revision(plan.Stable) != "v1" {
		t.Fatalf("retired plan = %+v", ro.Plan)
	}
	if _, err := s.r.Command(ctx, "default", "reviews", rolloutapi.CommandRequest{Kind: v1alpha1.CommandPromote}); err == nil {
		t.Fatal("a command for a Rollout no longer in Git succeeded")
	}
}
