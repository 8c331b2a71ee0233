package gitsync

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// WriteBackOptions configure Revert.
type WriteBackOptions struct {
	// AuthorName and AuthorEmail sign revert commits (author and
	// committer). Defaults: "Sluice", "sluice@localhost".
	AuthorName  string
	AuthorEmail string
	// MaxAttempts bounds the tries when the branch moves under a push.
	// Default 5.
	MaxAttempts int
	// HistoryDepth bounds how many commits are searched for the stable
	// revision's pod template (controller mode). Default 1000.
	HistoryDepth int
}

func (o WriteBackOptions) withDefaults() WriteBackOptions {
	o.AuthorName = cmp.Or(o.AuthorName, "Sluice")
	o.AuthorEmail = cmp.Or(o.AuthorEmail, "sluice@localhost")
	o.MaxAttempts = cmp.Or(o.MaxAttempts, 5)
	o.HistoryDepth = cmp.Or(o.HistoryDepth, 1000)
	return o
}

// RevertRequest asks for a revert commit: the engine's action, plus the
// analysis measurements that failed, quoted in the commit message.
type RevertRequest struct {
	engine.GitRevert
	Analysis []v1alpha1.MetricSummary
}

// RevertOutcome says what Revert did.
type RevertOutcome string

const (
	// RevertPushed: a commit setting the Rollout back to stable is on the
	// branch.
	RevertPushed RevertOutcome = "pushed"
	// RevertUnchanged: Git already names the stable revision.
	RevertUnchanged RevertOutcome = "unchanged"
	// RevertSuperseded: Git names a revision that is neither the failed nor
	// the stable one — someone pushed again since; their change is left
	// alone.
	RevertSuperseded RevertOutcome = "superseded"
	// RevertRemoved: the Rollout is no longer in Git.
	RevertRemoved RevertOutcome = "removed"
)

// RevertResult reports a write-back.
type RevertResult struct {
	Outcome RevertOutcome
	// Commit is the pushed commit, or the head that was examined.
	Commit string
	// File is the file edited (or that would have been).
	File     string
	Attempts int
}

// Revert commits to the source branch a change that sets the Rollout back
// to req.StableRevision, and pushes it. Only the fields naming the
// revision change: spec.backend's version and endpoints (standalone mode),
// or spec.template, restored from the most recent commit whose template
// hashes to the stable revision (controller mode). The rest of the file is
// kept byte for byte.
//
// If the branch moves meanwhile, the edit is made again on the new head,
// up to WriteBackOptions.MaxAttempts times (KindConflict after that). It
// never force-pushes. A push the remote refuses is a KindPushRejected
// error. Whatever the error, the caller keeps traffic on stable: a failed
// write-back leaves Git naming the failed revision, which the engine does
// not roll out again while it is the aborted canary.
func (s *Syncer) Revert(ctx context.Context, req RevertRequest) (res RevertResult, err error) {
	defer func() {
		outcome := string(res.Outcome)
		if err != nil {
			res.Outcome = "" // nothing was done
			outcome = string(KindOf(err))
			s.metrics.errors.WithLabelValues(s.src.Name, outcome).Inc()
			s.log.Error(err, "write-back failed; traffic stays on the stable revision",
				"rollout", joinNamespace(req.Namespace, req.Rollout), "stable", req.StableRevision)
		}
		s.metrics.writeBacks.WithLabelValues(s.src.Name, outcome).Inc()
	}()
	if s.src.Branch == "" {
		return res, newError(KindConfig, "write-back", errors.New("write-back needs a source that follows a branch"))
	}
	if req.Rollout == "" || req.StableRevision == "" {
		return res, newError(KindConfig, "write-back", errors.New("the request names no rollout or stable revision"))
	}
	var lastBase plumbing.Hash
	var lastErr error
	for attempt := 1; ; attempt++ {
		base, commit, out, err := s.prepareRevert(ctx, req)
		if err != nil {
			return res, err
		}
		res.Commit, res.File, res.Outcome = base.String(), out.file, out.outcome
		if out.outcome != RevertPushed {
			s.log.Info("write-back not needed", "rollout", joinNamespace(req.Namespace, req.Rollout),
				"outcome", out.outcome, "head", shortSHA(base.String()))
			return res, nil
		}
		if lastErr != nil && base == lastBase {
			// The push failed, yet the branch has not moved: the remote
			// refused this change itself.
			return res, &Error{Kind: KindPushRejected, Op: "write-back push", Commit: lastBase.String(), Err: lastErr}
		}
		if attempt > s.opts.WriteBack.MaxAttempts {
			return res, &Error{Kind: KindConflict, Op: "write-back", Commit: base.String(),
				Err: fmt.Errorf("branch %s kept moving; gave up after %d attempts: %w", s.src.Branch, s.opts.WriteBack.MaxAttempts, lastErr)}
		}
		res.Attempts = attempt
		err = s.push(ctx, commit, base)
		if err == nil {
			res.Commit = commit.String()
			s.log.Info("pushed revert commit", "rollout", joinNamespace(req.Namespace, req.Rollout),
				"commit", shortSHA(res.Commit), "file", out.file, "stable", req.StableRevision, "failed", req.FailedRevision)
			s.Trigger()
			return res, nil
		}
		if !refused(err) {
			return res, &Error{Kind: classifyRemote(err), Op: "write-back push", Commit: base.String(), Err: err}
		}
		s.log.Info("write-back push refused; fetching to see whether the branch moved", "attempt", attempt, "error", err.Error())
		lastBase, lastErr = base, err
	}
}

// refused reports whether a push error is the remote (or go-git, from the
// remote's advertisement) declining the update, as opposed to failing to
// talk to it.
func refused(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "non-fast-forward") || strings.Contains(msg, "command error on") ||
		strings.Contains(msg, "unpack error") || strings.Contains(msg, "required to be") ||
		errors.Is(err, git.ErrForceNeeded)
}

type revertPlan struct {
	outcome RevertOutcome
	file    string
}

// prepareRevert fetches the branch and, if a change is needed, writes the
// revert commit into the mirror (unpublished until pushed).
func (s *Syncer) prepareRevert(ctx context.Context, req RevertRequest) (base, commit plumbing.Hash, plan revertPlan, err error) {
	s.repoMu.Lock()
	defer s.repoMu.Unlock()
	fr, err := s.mirror.fetch(ctx)
	if err != nil {
		return base, commit, plan, err
	}
	base = fr.Head
	head, err := s.mirror.repo.CommitObject(base)
	if err != nil {
		return base, commit, plan, &Error{Kind: KindStorage, Op: "write-back", Commit: base.String(), Err: err}
	}
	tree, err := head.Tree()
	if err != nil {
		return base, commit, plan, &Error{Kind: KindStorage, Op: "write-back", Commit: base.String(), Err: err}
	}
	r := newTreeReader(s.mirror.repo.Storer, tree)
	ld, err := s.loader.load(r, s.src.Path)
	if err != nil {
		return base, commit, plan, &Error{Kind: KindWriteBack, Op: "write-back: load", Commit: base.String(), Err: err}
	}
	wbErr := func(err error) error {
		return &Error{Kind: KindWriteBack, Op: "write-back " + joinNamespace(req.Namespace, req.Rollout), Commit: base.String(), Err: err}
	}
	obj, err := findObject(ld.objects, req.Rollout, req.Namespace)
	if err != nil {
		return base, commit, plan, wbErr(err)
	}
	if obj == nil {
		return base, commit, revertPlan{outcome: RevertRemoved}, nil
	}
	plan.file = ld.real[obj.File]
	rev, err := engine.DesiredRevision(&obj.Rollout.Spec)
	switch {
	case err != nil:
		return base, commit, plan, wbErr(err)
	case rev == req.StableRevision:
		plan.outcome = RevertUnchanged
		return base, commit, plan, nil
	case req.FailedRevision != "" && rev != req.FailedRevision:
		plan.outcome = RevertSuperseded
		return base, commit, plan, nil
	}

	file, err := r.resolve(plan.file, false)
	if err != nil {
		return base, commit, plan, wbErr(err)
	}
	data, err := r.read(file.entry.Hash, s.loader.limits.MaxFileSize)
	if err != nil {
		return base, commit, plan, wbErr(err)
	}
	ns := obj.Rollout.Namespace
	edited, want, err := s.editRevision(head, plan.file, data, obj.Rollout, req)
	if err != nil {
		return base, commit, plan, wbErr(err)
	}
	if err := s.verifyEdit(plan.file, data, edited, want, req.StableRevision); err != nil {
		return base, commit, plan, wbErr(err)
	}
	commit, err = s.writeCommit(head, plan.file, edited, revertMessage(req, joinNamespace(ns, obj.Rollout.Name), plan.file))
	if err != nil {
		return base, commit, plan, &Error{Kind: KindStorage, Op: "write-back: commit", Commit: base.String(), Err: err}
	}
	plan.outcome = RevertPushed
	return base, commit, plan, nil
}

// findObject finds the Rollout name in namespace; a manifest without a
// namespace matches any (the consumer gave it its default).
func findObject(objs []manifest.Object, name, namespace string) (*manifest.Object, error) {
	var found []*manifest.Object
	for i := range objs {
		o := &objs[i]
		if o.Rollout != nil && o.Rollout.Name == name && (o.Rollout.Namespace == namespace || o.Rollout.Namespace == "") {
			found = append(found, o)
		}
	}
	if len(found) > 1 {
		// An exact namespace match wins over a defaulted one.
		exact := slices.DeleteFunc(slices.Clone(found), func(o *manifest.Object) bool { return o.Rollout.Namespace != namespace })
		if len(exact) == 1 {
			return exact[0], nil
		}
		return nil, fmt.Errorf("Rollout %s is defined %d times (%s:%d, %s:%d)", name, len(found),
			found[0].File, found[0].Line, found[1].File, found[1].Line)
	}
	if len(found) == 0 {
		return nil, nil
	}
	return found[0], nil
}

// editRevision returns the edited file and the Rollout it must decode to.
func (s *Syncer) editRevision(head *object.Commit, file string, data []byte, cur *v1alpha1.Rollout, req RevertRequest) ([]byte, *v1alpha1.Rollout, error) {
	want := cur.DeepCopy()
	switch {
	case cur.Spec.Backend != nil:
		stable := req.StableBackend
		if stable == nil || stable.Version != req.StableRevision {
			old, _, err := s.findStable(head, file, cur, req.StableRevision)
			if err != nil {
				return nil, nil, err
			}
			stable = old.Spec.Backend
		}
		want.Spec.Backend = stable.DeepCopy()
		edited, err := editBackend(data, cur.Name, cur.Namespace, stable)
		return edited, want, err
	case cur.Spec.Template != nil:
		old, oldData, err := s.findStable(head, file, cur, req.StableRevision)
		if err != nil {
			return nil, nil, err
		}
		want.Spec.Template = old.Spec.Template.DeepCopy()
		edited, err := editTemplate(data, oldData, cur.Name, cur.Namespace)
		return edited, want, err
	}
	return nil, nil, errors.New("spec has neither backend nor template")
}

// findStable searches the file's history, newest first, for the Rollout
// as it was when its spec named the stable revision.
func (s *Syncer) findStable(head *object.Commit, file string, cur *v1alpha1.Rollout, stable string) (*v1alpha1.Rollout, []byte, error) {
	iter, err := s.mirror.repo.Log(&git.LogOptions{From: head.Hash, Order: git.LogOrderCommitterTime})
	if err != nil {
		return nil, nil, err
	}
	defer iter.Close()
	seen := map[plumbing.Hash]bool{}
	for n := 0; n < s.opts.WriteBack.HistoryDepth; n++ {
		c, err := iter.Next()
		if err != nil {
			break // the end of history
		}
		tree, err := c.Tree()
		if err != nil {
			return nil, nil, err
		}
		r := newTreeReader(s.mirror.repo.Storer, tree)
		f, err := r.resolve(file, true)
		if err != nil || !isFile(f.entry.Mode) || seen[f.entry.Hash] {
			continue
		}
		seen[f.entry.Hash] = true
		data, err := r.read(f.entry.Hash, s.loader.limits.MaxFileSize)
		if err != nil {
			return nil, nil, err
		}
		res, err := manifest.Load(singleFile{name: file, data: data}, file, s.loader.opts...)
		if err != nil || len(res.Problems) > 0 {
			continue // an invalid version was never in force
		}
		for _, o := range res.Rollouts() {
			if o.Name != cur.Name || o.Namespace != cur.Namespace {
				continue
			}
			if rev, err := engine.DesiredRevision(&o.Spec); err == nil && rev == stable {
				return o, data, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("no commit among the last %d of %s names revision %s", s.opts.WriteBack.HistoryDepth, file, stable)
}

// verifyEdit re-reads the edited file and checks that it decodes to
// exactly the intended objects: the Rollout with only its revision fields
// changed, every other object unchanged, and all of it valid.
func (s *Syncer) verifyEdit(file string, before, after []byte, want *v1alpha1.Rollout, stable string) error {
	b, err := manifest.Load(singleFile{name: file, data: before}, file, s.loader.opts...)
	if err != nil {
		return err
	}
	a, err := manifest.Load(singleFile{name: file, data: after}, file, s.loader.opts...)
	if err != nil {
		return err
	}
	if err := a.Err(); err != nil {
		return fmt.Errorf("the edited file would not be valid: %w", err)
	}
	if len(a.Objects) != len(b.Objects) {
		return fmt.Errorf("the edit changed the number of objects in %s", file)
	}
	for i := range a.Objects {
		// Meta returns the object itself, so this compares whole objects.
		got, exp := any(a.Objects[i].Meta()), any(b.Objects[i].Meta())
		if r := a.Objects[i].Rollout; r != nil && r.Name == want.Name && r.Namespace == want.Namespace {
			exp = want
			if rev, err := engine.DesiredRevision(&r.Spec); err != nil || rev != stable {
				return fmt.Errorf("the edited Rollout names revision %q, not %q", rev, stable)
			}
		}
		if !jsonEqual(got, exp) {
			return fmt.Errorf("the edit changed more than the revision of %s:%d", file, a.Objects[i].Line)
		}
	}
	return nil
}

// writeCommit stores a commit on top of parent with file's content
// replaced.
func (s *Syncer) writeCommit(parent *object.Commit, file string, data []byte, msg string) (plumbing.Hash, error) {
	st := s.mirror.repo.Storer
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, err := blob.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	bh, err := st.SetEncodedObject(blob)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	tree, err := parent.Tree()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	root, err := s.replaceBlob(tree, splitPath(file), bh)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := object.Signature{Name: s.opts.WriteBack.AuthorName, Email: s.opts.WriteBack.AuthorEmail, When: s.opts.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: root, ParentHashes: []plumbing.Hash{parent.Hash}}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// replaceBlob writes the trees from the file up to the root with the
// file's entry pointing at blob, and returns the new root.
func (s *Syncer) replaceBlob(t *object.Tree, parts []string, blob plumbing.Hash) (plumbing.Hash, error) {
	entries := slices.Clone(t.Entries)
	i := slices.IndexFunc(entries, func(e object.TreeEntry) bool { return e.Name == parts[0] })
	if i < 0 {
		return plumbing.ZeroHash, fmt.Errorf("%s: not in tree", parts[0])
	}
	if len(parts) == 1 {
		entries[i].Hash = blob
	} else {
		sub, err := object.GetTree(s.mirror.repo.Storer, entries[i].Hash)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		h, err := s.replaceBlob(sub, parts[1:], blob)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries[i].Hash = h
	}
	obj := s.mirror.repo.Storer.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.mirror.repo.Storer.SetEncodedObject(obj)
}

// push updates the branch from base to commit, failing (never forcing) if
// the remote branch is anywhere but base.
func (s *Syncer) push(ctx context.Context, commit, base plumbing.Hash) error {
	s.repoMu.Lock()
	defer s.repoMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.src.Timeout)
	defer cancel()
	remote, err := s.mirror.repo.Remote(remoteName)
	if err != nil {
		return err
	}
	branch := plumbing.NewBranchReferenceName(s.src.Branch)
	err = remote.PushContext(ctx, &git.PushOptions{
		RemoteName:        remoteName,
		RefSpecs:          []config.RefSpec{config.RefSpec(commit.String() + ":" + branch.String())},
		RequireRemoteRefs: []config.RefSpec{config.RefSpec(base.String() + ":" + branch.String())},
		Auth:              s.mirror.auth,
		CABundle:          s.src.Auth.CABundle,
		InsecureSkipTLS:   s.src.Auth.InsecureSkipTLSVerify,
	})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

func revertMessage(req RevertRequest, rollout, file string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sluice: roll back %s to %s\n\n", rollout, req.StableRevision)
	fmt.Fprintf(&b, "Revision %s of Rollout %s failed and Sluice rolled it back", cmp.Or(req.FailedRevision, "(unknown)"), rollout)
	if req.Reason != "" {
		fmt.Fprintf(&b, " (%s)", req.Reason)
	}
	b.WriteString(".\n")
	if req.Message != "" {
		b.WriteString(req.Message + "\n")
	}
	if len(req.Analysis) > 0 {
		b.WriteString("\nAnalysis:\n")
		for _, m := range req.Analysis {
			fmt.Fprintf(&b, "- %s: %s", m.Name, m.Phase)
			if m.LastValue != "" {
				fmt.Fprintf(&b, ", last value %s", m.LastValue)
			}
			fmt.Fprintf(&b, " (successful %d, failed %d, inconclusive %d, error %d)", m.Successful, m.Failed, m.Inconclusive, m.Error)
			if m.Message != "" {
				b.WriteString(": " + m.Message)
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "\nThis sets %s back to the revision that is serving, so Git\nnames what runs.\n\n", file)
	fmt.Fprintf(&b, "Sluice-Rollout: %s\nSluice-Failed-Revision: %s\nSluice-Stable-Revision: %s\n", rollout, req.FailedRevision, req.StableRevision)
	if req.Reason != "" {
		fmt.Fprintf(&b, "Sluice-Reason: %s\n", req.Reason)
	}
	return b.String()
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
