package gitapply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// FieldManager is the server-side-apply field manager of everything the
// Applier writes. It differs from the Istio writer's ("sluice"): Git's
// content and the traffic plan are two owners, and the declared objects a
// Rollout names are left to the writer alone.
const FieldManager = "sluice-git"

// Defaults of Options.
const (
	DefaultNamespace = "default"
	DefaultResync    = 10 * time.Minute
)

// Retries of a failed apply back off from minRetry to maxRetry.
const (
	minRetry = time.Second
	maxRetry = 2 * time.Minute
)

// Options configure an Applier.
type Options struct {
	// Source is what to follow: URL, branch/tag/commit, path, interval,
	// credentials (standalone/config.Git.Source builds one from the git
	// section of a configuration file).
	Source gitsync.Source
	// Sync configures the Syncer: MirrorDir is required; Registerer gets
	// gitsync's metrics; WriteBack names the author of revert commits.
	// Its Logger defaults to Log.
	Sync gitsync.Options
	// DefaultNamespace is where objects whose manifests name no namespace
	// go; default DefaultNamespace.
	DefaultNamespace string
	// WriteBack lets Revert push revert commits. Off, Revert refuses and
	// the reconciler reports the action as failed.
	WriteBack bool
	// Resync is how often the commit in force is applied again although
	// nothing changed, undoing edits made in the cluster by hand; default
	// DefaultResync, negative never. Applying unchanged objects writes
	// nothing.
	Resync time.Duration
	// SourceID is written to AnnotationSource on every object applied,
	// and only objects carrying it are ever marked removed, deleted or
	// reverted by this Applier; default ConfigSourceID. A GitSource's is
	// GitSourceID(namespace, name).
	SourceID string
	// OnChange, if set, is called after State changes (a sync, an apply).
	// It must not block: it runs on the Applier's goroutine.
	OnChange func()
	Log      logr.Logger
}

// State is what the Applier reports.
type State struct {
	// Commit is the commit last applied to the cluster (in part if Err is
	// set); "" before the first.
	Commit string
	// Err is why the last apply was incomplete; it is tried again after a
	// backoff. Problems with Git itself (a rejected commit, an unreachable
	// remote) are in Git.Err: those leave the commit in force alone.
	Err error
	// At is when the last apply ended.
	At time.Time
	// Git is the Syncer's state.
	Git gitsync.State
}

// Applier applies a Git source's Rollouts, AnalysisTemplates and Istio
// objects to the cluster; see the package documentation. It is a
// controller-runtime Runnable that runs on the leader only.
type Applier struct {
	c      client.Client
	syncer *gitsync.Syncer
	opts   Options
	log    logr.Logger
	decl   declarations

	wake       chan event.GenericEvent
	wakeWanted atomic.Bool
	// stateWake delivers the source's Rollouts when its Git state
	// changes (StateWake).
	stateWake       chan event.GenericEvent
	stateWakeWanted atomic.Bool
	started         atomic.Bool

	mu    sync.Mutex
	state State
}

// New checks the options and opens the Syncer's mirror; nothing is fetched
// until Start. c should be the manager's client: lists come from its cache,
// writes go to the API server.
func New(c client.Client, opts Options) (*Applier, error) {
	if c == nil {
		return nil, errors.New("git applier: no client")
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	if opts.Sync.Logger.GetSink() == nil {
		opts.Sync.Logger = opts.Log.WithName("gitsync")
	}
	opts.DefaultNamespace = cmp.Or(opts.DefaultNamespace, DefaultNamespace)
	opts.Resync = cmp.Or(opts.Resync, DefaultResync)
	opts.SourceID = cmp.Or(opts.SourceID, ConfigSourceID)
	s, err := gitsync.New(opts.Source, opts.Sync)
	if err != nil {
		return nil, fmt.Errorf("git applier: %w", err)
	}
	return &Applier{
		c:      c,
		syncer: s,
		opts:   opts,
		log:    opts.Log.WithValues("source", s.Source().Name, "sourceID", opts.SourceID),
		wake:   make(chan event.GenericEvent, 256),

		stateWake: make(chan event.GenericEvent, 256),
	}, nil
}

// ID is the Applier's source ID (Options.SourceID).
func (a *Applier) ID() string { return a.opts.SourceID }

// Syncer is the Applier's Syncer: serve its Webhook, or Trigger it.
func (a *Applier) Syncer() *gitsync.Syncer { return a.syncer }

// NeedLeaderElection is true: only the leader applies Git, so replicas
// never apply two commits against each other.
func (a *Applier) NeedLeaderElection() bool { return true }

// Wake delivers the Rollouts whose Git declarations changed, and every
// Rollout after the first sync, for the reconciler to publish again
// (controller.Reconciler.Wake). Once asked for, it must be consumed: the
// Applier waits for room in it.
func (a *Applier) Wake() <-chan event.GenericEvent {
	a.wakeWanted.Store(true)
	return a.wake
}

// StateWake delivers every Rollout of the source whenever the source's
// Git state as the Rollouts show it (status.gitSync: head, commit in
// force, rejection) changes, for the reconciler to write it: a rejected
// push changes no spec, so nothing else would. Once asked for, it must be
// consumed.
func (a *Applier) StateWake() <-chan event.GenericEvent {
	a.stateWakeWanted.Store(true)
	return a.stateWake
}

// State returns what the Applier last did.
func (a *Applier) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Ready is a readiness check (healthz.Checker): it fails on the leader
// until the first commit is applied. Later failures leave the commit in
// force and do not fail it (a not-ready leader helps nobody), and on other
// replicas, where the Applier never starts, it always passes.
func (a *Applier) Ready(_ *http.Request) error {
	if !a.started.Load() {
		return nil
	}
	st := a.State()
	if st.Commit != "" {
		return nil
	}
	if err := st.Git.Err; err != nil {
		return fmt.Errorf("waiting for the first Git sync: %w", err)
	}
	return errors.New("waiting for the first Git sync")
}

// Start syncs and applies until ctx ends.
func (a *Applier) Start(ctx context.Context) error {
	a.started.Store(true)
	src := a.syncer.Source()
	a.log.Info("following Git", "ref", cmp.Or(src.Branch, src.Tag, src.Commit), "path", src.Path, "interval", src.Interval.String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.syncer.Run(ctx) // returns ctx.Err() only
	}()
	defer func() { <-done }()

	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	var inForce *gitsync.Snapshot
	var shown *v1alpha1.GitSyncStatus
	due := false
	retry := time.Duration(0)
	for {
		st, changed := a.syncer.Watch()
		a.setGit(st)
		if snap := st.Applied; snap != nil && (snap != inForce || due) {
			err := a.apply(ctx, snap)
			inForce, due = snap, false
			if ctx.Err() != nil {
				return nil
			}
			next := a.opts.Resync
			if err != nil {
				retry = min(max(2*retry, minRetry), maxRetry)
				next = retry
				a.log.Error(err, "commit applied in part; trying again", "commit", snap.Commit.Short(), "after", next.String())
			} else {
				retry = 0
			}
			if next > 0 {
				timer.Reset(next)
			}
		}
		shown = a.wakeOnGitChange(ctx, shown)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-timer.C:
			due = true
		}
	}
}

func (a *Applier) setGit(st gitsync.State) {
	a.mu.Lock()
	a.state.Git = st
	a.mu.Unlock()
	a.changed()
}

// changed tells Options.OnChange.
func (a *Applier) changed() {
	if a.opts.OnChange != nil {
		a.opts.OnChange()
	}
}

// setApplied records an apply of commit; "" when nothing of the commit
// could be applied, which leaves the previous commit recorded.
func (a *Applier) setApplied(commit string, err error) {
	a.mu.Lock()
	if commit != "" {
		a.state.Commit = commit
	}
	a.state.Err, a.state.At = err, time.Now()
	a.mu.Unlock()
	a.changed()
}
