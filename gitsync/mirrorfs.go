package gitsync

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// A fetch that fails part way (a limit, a timeout, a dropped connection)
// leaves go-git's temporary pack behind, open: its pack writer returns on
// the error without closing its files. Deleting the file would not give
// the disk back while it is open, so the mirror's filesystem keeps track
// of the temporary files go-git opens, and discard closes and deletes
// what a failed fetch left.

// tmpPrefix starts the names of go-git's temporary object files
// (tmp_pack_, tmp_obj_).
const tmpPrefix = "tmp_"

// mirrorFS is the mirror's filesystem: the OS's, plus the bookkeeping
// above.
type mirrorFS struct {
	billy.Filesystem

	mu   sync.Mutex
	open map[*tmpFile]struct{}
}

func newMirrorFS(dir string) *mirrorFS {
	return &mirrorFS{Filesystem: osfs.New(dir), open: map[*tmpFile]struct{}{}}
}

// openMirrorRepo opens (or, with create, initialises) the bare repository
// in dir on a mirrorFS.
func openMirrorRepo(dir string, create bool) (*git.Repository, *mirrorFS, error) {
	mfs := newMirrorFS(dir)
	st := filesystem.NewStorage(mfs, cache.NewObjectLRUDefault())
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, err
		}
		repo, err := git.Init(st, nil)
		return repo, mfs, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, git.ErrRepositoryNotExists
	}
	repo, err := git.Open(st, nil)
	return repo, mfs, err
}

func isTmpObject(name string) bool {
	return strings.HasPrefix(path.Base(name), tmpPrefix) && strings.Contains(filepath.ToSlash(name), "objects/")
}

func (m *mirrorFS) TempFile(dir, prefix string) (billy.File, error) {
	f, err := m.Filesystem.TempFile(dir, prefix)
	if err != nil || !strings.HasPrefix(prefix, tmpPrefix) {
		return f, err
	}
	return m.track(f), nil
}

func (m *mirrorFS) Open(name string) (billy.File, error) {
	f, err := m.Filesystem.Open(name)
	if err != nil || !isTmpObject(name) {
		return f, err
	}
	return m.track(f), nil
}

// OpenFile and Create hand go-git a replaceFile for the files it rewrites
// in place (atomicfile.go).
func (m *mirrorFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	if writes(flag) && replacedInPlace(name) {
		return openReplaceFile(m.Filesystem, name, flag, perm)
	}
	return m.Filesystem.OpenFile(name, flag, perm)
}

func (m *mirrorFS) Create(name string) (billy.File, error) {
	return m.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Chmod and Capabilities pass through what embedding the interface would
// hide: go-git makes finished packs read-only through billy.Chmod.
func (m *mirrorFS) Chmod(name string, mode os.FileMode) error {
	if c, ok := m.Filesystem.(billy.Chmod); ok {
		return c.Chmod(name, mode)
	}
	return billy.ErrNotSupported
}

func (m *mirrorFS) Capabilities() billy.Capability { return billy.Capabilities(m.Filesystem) }

func (m *mirrorFS) track(f billy.File) billy.File {
	t := &tmpFile{File: f, fs: m}
	m.mu.Lock()
	m.open[t] = struct{}{}
	m.mu.Unlock()
	return t
}

// discard closes the temporary files still open and deletes every
// temporary object file, and the temporary files of a ref or config
// write a crash interrupted. Callers make sure no fetch or write is under
// way (Syncer.repoMu).
func (m *mirrorFS) discard() error {
	m.mu.Lock()
	left := make([]*tmpFile, 0, len(m.open))
	for t := range m.open {
		left = append(left, t)
	}
	m.mu.Unlock()
	var errs []error
	for _, t := range left {
		if err := t.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if entries, err := m.ReadDir(""); err == nil {
		for _, e := range entries {
			if !e.IsDir() && strings.HasPrefix(e.Name(), replaceTmpPrefix) {
				if err := m.Remove(e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, dir := range []string{"objects", "objects/pack"} {
		entries, err := m.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasPrefix(e.Name(), tmpPrefix) {
				if err := m.Remove(m.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

type tmpFile struct {
	billy.File
	fs *mirrorFS
}

func (t *tmpFile) Close() error {
	t.fs.mu.Lock()
	delete(t.fs.open, t)
	t.fs.mu.Unlock()
	return t.File.Close()
}
