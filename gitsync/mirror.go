package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-logr/logr"
)

const (
	remoteName = "origin"
	// appliedRef remembers the last good commit across restarts, so a
	// restart onto a rejected head still has a state to serve.
	appliedRef = plumbing.ReferenceName("refs/sluice/applied")
)

// defaultMaxPacks is how many packfiles a mirror collects before it is
// repacked. Every fetch that brings objects adds a pack, and go-git looks
// an object up in each pack's index in turn, so a mirror polled for months
// would otherwise slow down.
const defaultMaxPacks = 50

// mirror is a bare repository on disk that tracks one source. go-git's
// storage is not safe for concurrent use: callers hold Syncer.repoMu.
type mirror struct {
	src      Source
	dir      string
	repo     *git.Repository
	fs       *mirrorFS
	auth     transport.AuthMethod
	log      logr.Logger
	maxPacks int
	// refused is the last fetch stopped by a limit, while the remote
	// still advertises what it was for (refused.go).
	refused *refusal
}

var unsafeNameRE = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// mirrorDir names a source's mirror after its URL, so changing the URL
// never mixes two repositories' objects, and a restart finds its mirror.
func mirrorDir(base string, src Source) string {
	sum := sha256.Sum256([]byte(src.URL))
	name := strings.Trim(unsafeNameRE.ReplaceAllString(src.Name, "-"), "-.")
	if len(name) > 40 {
		name = name[:40]
	}
	return filepath.Join(base, name+"-"+hex.EncodeToString(sum[:6]))
}

// openMirror opens the mirror in dir, creating it if needed. A mirror that
// cannot be opened is rebuilt: it holds nothing that a fetch cannot
// restore. What a fetch cut short by a crash left is deleted.
func openMirror(dir string, src Source, log logr.Logger) (*git.Repository, *mirrorFS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, newError(KindStorage, "open mirror", err)
	}
	repoDir := filepath.Join(dir, "repo.git")
	repo, mfs, err := openMirrorRepo(repoDir, false)
	if err == nil {
		// Refs are read lazily: a ref file emptied by a crash of an older
		// Sluice (before atomicfile.go) would fail every fetch after this.
		err = readableRefs(repo)
	}
	switch {
	case err == nil:
		log.V(1).Info("reusing mirror", "dir", dir)
		if derr := mfs.discard(); derr != nil {
			log.Error(derr, "cannot delete the temporary files of an interrupted fetch", "dir", dir)
		}
	case errors.Is(err, git.ErrRepositoryNotExists):
		repo, mfs, err = openMirrorRepo(repoDir, true)
	default:
		log.Error(err, "mirror is unreadable; rebuilding it", "dir", dir)
		if rerr := os.RemoveAll(repoDir); rerr != nil {
			return nil, nil, newError(KindStorage, "open mirror", rerr)
		}
		repo, mfs, err = openMirrorRepo(repoDir, true)
	}
	if err != nil {
		return nil, nil, newError(KindStorage, "open mirror", err)
	}
	// The URL is part of the directory name, but the remote may still
	// carry an old form of it (credentials in the URL changed, say).
	rc, err := repo.Remote(remoteName)
	if err == nil && len(rc.Config().URLs) == 1 && rc.Config().URLs[0] == src.URL {
		return repo, mfs, nil
	}
	_ = repo.DeleteRemote(remoteName)
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{src.URL}}); err != nil {
		return nil, nil, newError(KindStorage, "open mirror", err)
	}
	return repo, mfs, nil
}

// readableRefs reads every reference of repo once.
func readableRefs(repo *git.Repository) error {
	iter, err := repo.References()
	if err != nil {
		return fmt.Errorf("read references: %w", err)
	}
	defer iter.Close()
	if err := iter.ForEach(func(*plumbing.Reference) error { return nil }); err != nil {
		return fmt.Errorf("read references: %w", err)
	}
	return nil
}

// trackingRef is the local ref the source's remote ref is fetched into;
// empty for a fixed commit.
func (m *mirror) trackingRef() plumbing.ReferenceName {
	switch {
	case m.src.Branch != "":
		return plumbing.NewRemoteReferenceName(remoteName, m.src.Branch)
	case m.src.Tag != "":
		return plumbing.NewTagReferenceName(m.src.Tag)
	}
	return ""
}

func (m *mirror) refSpecs() []config.RefSpec {
	switch {
	case m.src.Branch != "":
		// "+": a force-pushed branch is taken as is; the Syncer detects and
		// reports it by comparing the old and new heads.
		return []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(m.src.Branch).String() + ":" + m.trackingRef().String())}
	case m.src.Tag != "":
		return []config.RefSpec{config.RefSpec("+" + m.trackingRef().String() + ":" + m.trackingRef().String())}
	}
	// A fixed commit may be on any branch or tag.
	return []config.RefSpec{
		config.RefSpec("+refs/heads/*:refs/remotes/origin/*"),
		config.RefSpec("+refs/tags/*:refs/tags/*"),
	}
}

// fetchResult is what a fetch found.
type fetchResult struct {
	// Head is the commit the source names now; Previous the one it named
	// before this fetch (zero if unknown).
	Head, Previous plumbing.Hash
	// Fetched is false when the fetch was skipped (a fixed commit already
	// present, or a refusal remembered).
	Fetched bool
	// Refused is true when the fetch was not made because the remote
	// still advertises the tip a limit refused before, under the same
	// limits; the error is that refusal's.
	Refused bool
}

// fetch brings the mirror up to date and resolves the source's commit.
func (m *mirror) fetch(ctx context.Context) (fetchResult, error) {
	var res fetchResult
	if m.src.Commit != "" {
		h := plumbing.NewHash(m.src.Commit)
		if _, err := m.repo.CommitObject(h); err == nil {
			res.Head, res.Previous = h, h
			return res, nil
		}
	} else if ref, err := m.repo.Reference(m.trackingRef(), true); err == nil {
		res.Previous = ref.Hash()
	}

	ctx, cancel := context.WithTimeout(ctx, m.src.Timeout)
	defer cancel()
	if m.src.Auth.InsecureSkipTLSVerify {
		m.log.Error(nil, "INSECURE: fetching without TLS certificate verification (insecureSkipTLSVerify is set)")
	}
	again, err := m.refusedAgain(ctx)
	if err != nil {
		return res, m.remoteError(ctx, err)
	}
	if again {
		res.Refused = true
		return res, m.refusalError(m.refused)
	}
	ctx, budget := withPackBudget(ctx, m.src.FetchLimits)
	err = m.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName:      remoteName,
		RefSpecs:        m.refSpecs(),
		Auth:            m.auth,
		Tags:            git.NoTags,
		Force:           true,
		CABundle:        m.src.Auth.CABundle,
		InsecureSkipTLS: m.src.Auth.InsecureSkipTLSVerify,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if derr := m.fs.discard(); derr != nil {
			m.log.Error(derr, "cannot delete the temporary files of a failed fetch")
		}
		if lerr := budget.exceeded(); lerr != nil {
			return res, m.remember(budget.advertisedRefs(), lerr)
		}
		return res, m.remoteError(ctx, err)
	}
	res.Fetched = true
	m.forget()

	h, err := m.resolve()
	if err != nil {
		return res, err
	}
	res.Head = h
	return res, nil
}

// remoteError is a failure to talk to the remote under ctx, the
// fetch's.
func (m *mirror) remoteError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", m.src.Timeout, err)
	}
	return &Error{Kind: classifyRemote(err), Op: "fetch " + redactURL(m.src.URL), Err: err}
}

// resolve returns the commit the source names in the mirror.
func (m *mirror) resolve() (plumbing.Hash, error) {
	op := "resolve " + m.describeRef()
	if m.src.Commit != "" {
		h := plumbing.NewHash(m.src.Commit)
		if _, err := m.repo.CommitObject(h); err != nil {
			return h, &Error{Kind: KindNotFound, Op: op, Commit: m.src.Commit,
				Err: errors.New("no branch or tag of the remote contains this commit")}
		}
		return h, nil
	}
	ref, err := m.repo.Reference(m.trackingRef(), true)
	if err != nil {
		return plumbing.ZeroHash, &Error{Kind: KindNotFound, Op: op, Err: err}
	}
	c, err := peelCommit(m.repo, ref.Hash())
	if err != nil {
		return plumbing.ZeroHash, &Error{Kind: KindInvalidCommit, Op: op, Commit: ref.Hash().String(), Err: err}
	}
	return c.Hash, nil
}

func (m *mirror) describeRef() string {
	switch {
	case m.src.Branch != "":
		return "branch " + m.src.Branch
	case m.src.Tag != "":
		return "tag " + m.src.Tag
	}
	return "commit " + m.src.Commit
}

// peelCommit follows annotated tags to the commit they name.
func peelCommit(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return nil, fmt.Errorf("%s: too many nested tags", h)
}

// descends reports whether head has prev in its history. A prev that is
// no longer in the mirror (rebuilt) is reported as descended: there is
// nothing to compare with, so nothing to warn about.
func (m *mirror) descends(head, prev plumbing.Hash) (bool, error) {
	if prev.IsZero() || head == prev {
		return true, nil
	}
	pc, err := m.repo.CommitObject(prev)
	if err != nil {
		return true, nil // a rebuilt mirror: see above
	}
	hc, err := m.repo.CommitObject(head)
	if err != nil {
		return false, newError(KindStorage, "compare commits", err)
	}
	return pc.IsAncestor(hc)
}

// maintain repacks the mirror once it holds more than maxPacks packs.
// Only objects reachable from a ref survive, which also drops revert
// commits whose push failed.
func (m *mirror) maintain() error {
	pos, ok := m.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= m.maxPacks {
		return err
	}
	if err := m.repo.RepackObjects(&git.RepackConfig{}); err != nil {
		return err
	}
	// The storage caches the indexes of the packs just deleted: reopen.
	repo, mfs, err := openMirrorRepo(filepath.Join(m.dir, "repo.git"), false)
	if err != nil {
		return err
	}
	m.repo, m.fs = repo, mfs
	m.log.V(1).Info("repacked mirror", "packs", len(packs))
	return nil
}

func (m *mirror) setApplied(h plumbing.Hash) error {
	return m.repo.Storer.SetReference(plumbing.NewHashReference(appliedRef, h))
}

func (m *mirror) applied() (plumbing.Hash, bool) {
	ref, err := m.repo.Reference(appliedRef, false)
	if err != nil {
		return plumbing.ZeroHash, false
	}
	return ref.Hash(), true
}
