package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/validation"
)

// Options configure a Syncer beyond its Source.
type Options struct {
	// MirrorDir holds the local mirrors, one folder per source URL. It is
	// reused across restarts, so a restart fetches only what is new. One
	// process per directory.
	MirrorDir string
	Logger    logr.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Validator, if set, replaces the manifest package's default
	// validator (which also compiles analysis conditions).
	Validator *validation.Validator
	Limits    Limits
	// Namespace, when set, confines the source to one namespace: a
	// commit with an object whose metadata.namespace names another is
	// rejected whole (manifest.WithNamespace), like any invalid commit.
	Namespace string
	WriteBack WriteBackOptions
	// Now is the clock for timestamps and commit times; default time.Now.
	Now func() time.Time
}

// State is what a Syncer knows. Consumers apply Applied and show Err:
// Applied stays the last good commit whatever goes wrong after it.
type State struct {
	// Applied is the desired state of the last good commit; nil until one
	// has been seen.
	Applied *Snapshot
	// Err is why the source's current commit is not applied, or why the
	// last fetch failed; nil when Applied is the source's current commit.
	// It is an *Error (see KindOf); for a rejected commit it carries the
	// commit SHA and every problem as file:line: field: reason.
	Err error
	// Head is the commit the source named at the last successful fetch
	// (or, when a fetch limit refused it, at the last look at the
	// remote's refs).
	Head string
	// Rejected is why the last commit judged was rejected (an invalid
	// manifest, a limit), kept until a later commit applies: unlike Err,
	// a failed fetch after the rejection does not replace it, so status
	// can tell the rejected commit and its problems for as long as it is
	// not superseded. It is an *Error with Commit set (RejectedOf).
	Rejected *Error
	// RejectedAt is when Rejected was judged.
	RejectedAt time.Time
	// LastFetch is the time of the last successful fetch; LastAttempt of
	// the last sync, successful or not.
	LastFetch   time.Time
	LastAttempt time.Time
	// Generation increases whenever Applied, Err or Head changes.
	Generation uint64
}

// Syncer follows one Source: it polls (or is triggered by a webhook),
// fetches into its mirror, loads and validates the commit, and publishes
// the result as a State.
type Syncer struct {
	src     Source
	opts    Options
	log     logr.Logger
	metrics *metrics
	trigger chan struct{}

	// syncMu makes syncs one at a time.
	syncMu sync.Mutex
	// repoMu guards the mirror and the loader's cache.
	repoMu sync.Mutex
	mirror *mirror
	loader *loader
	limits *treeChecker
	// judged is the last commit loaded, good or not, and judgedErr its
	// rejection; an unchanged head is not loaded again.
	judged    plumbing.Hash
	judgedErr error

	mu      sync.Mutex
	state   State
	changed chan struct{}
}

// New checks the source, opens (or creates) its mirror and returns a
// Syncer. It does not fetch: call Run, or Sync.
func New(src Source, opts Options) (*Syncer, error) {
	src, err := src.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.MirrorDir == "" {
		return nil, newError(KindConfig, "configure source", errors.New("MirrorDir is required"))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	opts.WriteBack = opts.WriteBack.withDefaults()
	log := opts.Logger.WithValues("source", src.Name)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, newError(KindConfig, "register metrics", err)
	}
	m.init(src.Name, src.Auth.insecure())
	if src.Auth.insecure() {
		log.Error(nil, "INSECURE: this source does not verify the server's identity; anyone on the network path can serve it manifests",
			"insecureSkipTLSVerify", src.Auth.InsecureSkipTLSVerify, "insecureIgnoreHostKey", src.Auth.InsecureIgnoreHostKey)
	}
	dir := mirrorDir(opts.MirrorDir, src)
	auth, err := src.Auth.transportAuth(src.URL, filepath.Join(dir, "known_hosts"), log)
	if err != nil {
		return nil, err
	}
	repo, mfs, err := openMirror(dir, src, log)
	if err != nil {
		return nil, err
	}
	mir := &mirror{src: src, dir: dir, repo: repo, fs: mfs, auth: auth, log: log, maxPacks: defaultMaxPacks}
	if mir.refused, err = readRefusal(dir); err != nil {
		log.Error(err, "cannot read the record of a refused fetch; the next poll fetches in full")
	}
	return &Syncer{
		src:     src,
		opts:    opts,
		log:     log,
		metrics: m,
		trigger: make(chan struct{}, 1),
		mirror:  mir,
		limits:  &treeChecker{limits: src.FetchLimits},
		loader:  newLoader(opts.Limits, opts.Validator, opts.Namespace),
		changed: make(chan struct{}),
	}, nil
}

// Source returns the source with defaults filled in.
func (s *Syncer) Source() Source { return s.src }

// Run syncs at once, then every Source.Interval and whenever triggered,
// until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-s.trigger:
		}
		s.Sync(ctx)
		timer.Reset(s.src.Interval)
	}
}

// Trigger asks Run to sync now. It never blocks; triggers that arrive
// while one is pending are merged.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// State returns the current state.
func (s *Syncer) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Watch returns the current state and a channel that is closed when a
// newer one is published, for any number of consumers.
func (s *Syncer) Watch() (State, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.changed
}

// Sync fetches and applies the source's current commit once, and returns
// the resulting state.
func (s *Syncer) Sync(ctx context.Context) State {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	start := s.opts.Now()
	s.repoMu.Lock()
	fr, err := s.mirror.fetch(ctx)
	if fr.Fetched || (err != nil && !fr.Refused) {
		s.metrics.fetched(s.src.Name, start, s.opts.Now(), err == nil)
	}
	if err != nil {
		// After a restart, the last good commit is served while the
		// remote cannot be fetched, as while its head is rejected.
		var fallback *Snapshot
		if ctx.Err() == nil && s.State().Applied == nil {
			fallback = s.lastApplied(plumbing.ZeroHash)
		}
		s.repoMu.Unlock()
		switch {
		case ctx.Err() != nil:
			return s.State() // shutting down: not the remote's fault
		case fr.Refused:
			return s.stillRefused(err, start, fallback)
		}
		return s.failed(err, start, fallback)
	}
	if fr.Fetched {
		if err := s.mirror.maintain(); err != nil {
			s.log.Error(err, "cannot repack the mirror")
		}
	}
	if fr.Head == s.judged {
		s.repoMu.Unlock()
		return s.unchanged(fr.Head, start)
	}
	forced := s.checkForcePush(fr)
	snap, err := s.loadCommit(fr.Head)
	var fallback *Snapshot
	if err != nil && s.State().Applied == nil {
		fallback = s.lastApplied(fr.Head)
	}
	if err == nil {
		if serr := s.mirror.setApplied(fr.Head); serr != nil {
			s.log.Error(serr, "cannot record the applied commit; a restart onto a bad commit would start empty")
		}
	}
	// A commit's content never changes, so its verdict is final, unless
	// the mirror itself failed: then the next poll tries again.
	if KindOf(err) != KindStorage {
		s.judged, s.judgedErr = fr.Head, err
	}
	s.repoMu.Unlock()

	if err != nil {
		return s.rejected(err, fr.Head, start, fallback)
	}
	snap.ForcePushedOver = forced
	return s.applied(snap, start)
}

// checkForcePush compares the new head with the one this Syncer last
// loaded (after a restart: the ref in the mirror), so a fetch made by a
// write-back in between does not hide a rewrite.
func (s *Syncer) checkForcePush(fr fetchResult) string {
	if !s.judged.IsZero() {
		fr.Previous = s.judged
	}
	ok, err := s.mirror.descends(fr.Head, fr.Previous)
	if err != nil {
		s.log.Error(err, "cannot tell whether the branch was force-pushed")
		return ""
	}
	if ok {
		return ""
	}
	s.metrics.forcePushes.WithLabelValues(s.src.Name).Inc()
	s.log.Info("force-push detected: the new head does not descend from the previous one; taking it as is",
		"ref", s.mirror.describeRef(), "previous", shortSHA(fr.Previous.String()), "head", shortSHA(fr.Head.String()))
	return fr.Previous.String()
}

// loadCommit loads and validates commit h. Callers hold repoMu.
func (s *Syncer) loadCommit(h plumbing.Hash) (*Snapshot, error) {
	sha := h.String()
	c, err := s.mirror.repo.CommitObject(h)
	if err != nil {
		return nil, &Error{Kind: KindStorage, Op: "load", Commit: sha, Err: err}
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, &Error{Kind: KindStorage, Op: "load", Commit: sha, Err: err}
	}
	// Before any file is read: a file over the limit is never loaded.
	var lerr *FetchLimitError
	switch err := s.limits.check(s.mirror.repo.Storer, tree); {
	case errors.As(err, &lerr):
		return nil, &Error{Kind: KindLimit, Op: "load", Commit: sha, Err: err}
	case err != nil:
		return nil, &Error{Kind: KindStorage, Op: "load", Commit: sha, Err: err}
	}
	ld, err := s.loader.load(newTreeReader(s.mirror.repo.Storer, tree), s.src.Path)
	switch {
	case isLimit(err):
		return nil, &Error{Kind: KindLimit, Op: "load", Commit: sha, Err: err}
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errEscapes), errors.Is(err, errLoop), errors.Is(err, fs.ErrInvalid):
		p := manifest.Problem{File: s.src.Path, Line: 1, Reason: err.Error()}
		return nil, &Error{Kind: KindInvalidCommit, Op: "load", Commit: sha, Problems: []manifest.Problem{p},
			Err: &manifest.ProblemsError{Problems: []manifest.Problem{p}}}
	case err != nil:
		return nil, &Error{Kind: KindStorage, Op: "load", Commit: sha, Err: err}
	case len(ld.problems) > 0:
		return nil, &Error{Kind: KindInvalidCommit, Op: "load", Commit: sha, Problems: ld.problems,
			Err: &manifest.ProblemsError{Problems: ld.problems}}
	}
	s.log.V(1).Info("loaded commit", "commit", shortSHA(sha), "files", len(ld.files), "parsed", ld.parsed, "objects", len(ld.objects))
	return newSnapshot(redactURL(s.src.URL), s.src.Path, commitOf(c), ld.objects), nil
}

// lastApplied loads the commit recorded as applied before a restart, so a
// Syncer that starts on a rejected head, or with a remote it cannot fetch
// (head zero), still serves the last good state. Callers hold repoMu.
func (s *Syncer) lastApplied(head plumbing.Hash) *Snapshot {
	h, ok := s.mirror.applied()
	if !ok || h == head {
		return nil
	}
	snap, err := s.loadCommit(h)
	if err != nil {
		s.log.Error(err, "the commit applied before the restart no longer loads", "commit", shortSHA(h.String()))
		return nil
	}
	s.log.Info("serving the commit applied before the restart", "commit", shortSHA(h.String()))
	return snap
}

func (s *Syncer) applied(snap *Snapshot, start time.Time) State {
	now := s.opts.Now()
	return s.publish(func(st *State) {
		prev := st.Applied
		snap.Removed = snap.removedSince(prev)
		for _, r := range snap.Removed {
			s.log.Info("object removed from Git: no longer managed; a removed Rollout's traffic stays on its stable revision",
				"object", r.String(), "commit", snap.Commit.Short())
		}
		st.Applied, st.Err, st.Head = snap, nil, snap.Commit.SHA
		s.setRejected(st, nil, now)
		st.LastFetch, st.LastAttempt = now, start
		s.metrics.appliedCommit(s.src.Name, snap, prev, now)
		s.metrics.setCurrent(s.src.Name, "")
		s.log.Info("applied commit", "commit", snap.Commit.Short(), "subject", snap.Commit.Subject(),
			"objects", len(snap.Objects), "removed", len(snap.Removed), "duration", now.Sub(start).String())
	})
}

func (s *Syncer) rejected(err error, head plumbing.Hash, start time.Time, fallback *Snapshot) State {
	now := s.opts.Now()
	return s.publish(func(st *State) {
		s.serveFallback(st, fallback, now)
		inForce := "none"
		if st.Applied != nil {
			inForce = st.Applied.Commit.Short()
		}
		st.Err, st.Head = err, head.String()
		s.setRejected(st, RejectedOf(err), now)
		st.LastFetch, st.LastAttempt = now, start
		s.metrics.syncFailed(s.src.Name, KindOf(err))
		s.log.Error(err, "commit not applied; the last good commit stays in force", "commit", shortSHA(head.String()), "inForce", inForce)
	})
}

// unchanged handles a fetch that found the commit already judged: a fetch
// error before it is over, and a rejection stands.
func (s *Syncer) unchanged(head plumbing.Hash, start time.Time) State {
	now := s.opts.Now()
	return s.publish(func(st *State) {
		st.Err, st.Head = s.judgedErr, head.String()
		s.setRejected(st, RejectedOf(s.judgedErr), now)
		st.LastFetch, st.LastAttempt = now, start
		s.metrics.setCurrent(s.src.Name, KindOf(s.judgedErr))
	})
}

// stillRefused handles a poll that found the remote still advertising
// what a limit refused: like an unchanged rejected commit, it is neither
// downloaded nor counted again.
func (s *Syncer) stillRefused(err error, start time.Time, fallback *Snapshot) State {
	return s.publish(func(st *State) {
		s.serveFallback(st, fallback, s.opts.Now())
		if errText(st.Err) == errText(err) {
			s.metrics.setCurrent(s.src.Name, KindLimit)
		} else {
			// Remembered from before a restart, or back after another
			// error: reported as a new failure.
			s.metrics.syncFailed(s.src.Name, KindLimit)
			s.log.Error(err, "the remote still advertises what a limit refused; not downloading it again")
		}
		st.Err, st.LastAttempt = err, start
		s.refusedHead(st, err)
	})
}

func (s *Syncer) failed(err error, start time.Time, fallback *Snapshot) State {
	return s.publish(func(st *State) {
		s.serveFallback(st, fallback, s.opts.Now())
		st.Err, st.LastAttempt = err, start
		s.refusedHead(st, err)
		s.metrics.syncFailed(s.src.Name, KindOf(err))
		inForce := "none"
		if st.Applied != nil {
			inForce = st.Applied.Commit.Short()
		}
		s.log.Error(err, "sync failed; the last good commit stays in force", "inForce", inForce)
	})
}

// refusedHead records a fetch that a limit refused as a rejection of the
// commit the remote advertised, which is then the head: the branch points
// at it, and it is not applied. Any other failure leaves Head and
// Rejected as they were (the remote's head is not known anew).
func (s *Syncer) refusedHead(st *State, err error) {
	if r := RejectedOf(err); r != nil {
		st.Head = r.Commit
		s.setRejected(st, r, s.opts.Now())
	}
}

// setRejected records r as the rejection in force, stamped with now when
// it is a new one.
func (s *Syncer) setRejected(st *State, r *Error, now time.Time) {
	if r != nil && st.Rejected != nil && r.Commit == st.Rejected.Commit && errText(r) == errText(st.Rejected) {
		// The same verdict again (a remembered refusal is a new error
		// each time): nothing changed.
		return
	}
	if r != st.Rejected {
		st.RejectedAt = now
	}
	st.Rejected = r
	if r == nil {
		st.RejectedAt = time.Time{}
	}
}

// serveFallback makes fallback, the commit applied before a restart, the
// applied state; nil changes nothing.
func (s *Syncer) serveFallback(st *State, fallback *Snapshot, now time.Time) {
	if fallback != nil {
		st.Applied = fallback
		s.metrics.appliedCommit(s.src.Name, fallback, nil, now)
	}
}

// publish changes the state and wakes watchers if anything they act on
// changed.
func (s *Syncer) publish(change func(*State)) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.state
	change(&s.state)
	if before.Applied != s.state.Applied || before.Head != s.state.Head || errText(before.Err) != errText(s.state.Err) ||
		before.Rejected != s.state.Rejected {
		s.state.Generation++
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return s.state
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprint(err)
}
