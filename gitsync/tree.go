package gitsync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/sluicehq/sluice/rollout/manifest"
)

// Reading a commit's tree straight from the object store, with no checkout:
// nothing is written to disk, so a commit cannot place files (or links)
// anywhere, and unchanged files are known by their blob hash without being
// read.

var (
	errEscapes = errors.New("symbolic link points outside the repository")
	errLoop    = errors.New("too many levels of symbolic links")
	errBadName = errors.New("invalid name in the Git tree")
)

// maxLinkHops bounds symbolic link resolution, as the kernel's ELOOP does.
const maxLinkHops = 40

// maxLinkTarget bounds the size of a symbolic link's blob: it holds a path.
const maxLinkTarget = 4096

// treeReader resolves paths in one commit's tree.
type treeReader struct {
	s     storer.EncodedObjectStorer
	root  *object.Tree
	trees map[string]*object.Tree // by resolved path, "." for the root
}

func newTreeReader(s storer.EncodedObjectStorer, root *object.Tree) *treeReader {
	return &treeReader{s: s, root: root, trees: map[string]*object.Tree{".": root}}
}

// tree returns the tree at a resolved directory path.
func (r *treeReader) tree(dir string, hash plumbing.Hash) (*object.Tree, error) {
	if t, ok := r.trees[dir]; ok {
		return t, nil
	}
	t, err := object.GetTree(r.s, hash)
	if err != nil {
		return nil, err
	}
	r.trees[dir] = t
	return t, nil
}

// resolved is a path after following symbolic links.
type resolved struct {
	path  string // "." for the root
	entry object.TreeEntry
}

func (r resolved) isDir() bool { return r.entry.Mode == filemode.Dir }

// resolve follows p through the tree, resolving every symbolic link on the
// way (and the last one when followLast), and refuses any that leaves the
// repository: an absolute target, or one with more ".." than it has
// parents.
func (r *treeReader) resolve(p string, followLast bool) (resolved, error) {
	cur := resolved{path: ".", entry: object.TreeEntry{Mode: filemode.Dir, Hash: r.root.Hash}}
	var stack []string // resolved components
	parts := splitPath(p)
	hops := 0
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return cur, errEscapes
			}
			stack = stack[:len(stack)-1]
			parent, err := r.resolve(strings.Join(stack, "/"), false)
			if err != nil {
				return cur, err
			}
			cur = parent
			continue
		}
		if !cur.isDir() {
			return cur, fmt.Errorf("%s: %w", cur.path, fs.ErrInvalid)
		}
		dir, err := r.tree(cur.path, cur.entry.Hash)
		if err != nil {
			return cur, err
		}
		e, err := dir.FindEntry(name)
		if err != nil {
			return cur, fs.ErrNotExist
		}
		if e.Mode == filemode.Symlink && (len(parts) > 0 || followLast) {
			if hops++; hops > maxLinkHops {
				return cur, errLoop
			}
			target, err := r.read(e.Hash, maxLinkTarget)
			if err != nil {
				return cur, err
			}
			if strings.HasPrefix(string(target), "/") {
				return cur, errEscapes
			}
			// The target is relative to the link's directory, where cur is.
			parts = append(splitPath(string(target)), parts...)
			continue
		}
		stack = append(stack, name)
		cur = resolved{path: strings.Join(stack, "/"), entry: *e}
	}
	return cur, nil
}

func splitPath(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}

// read returns at most limit+1 bytes of a blob, so an oversized file is
// seen as such without reading all of it.
func (r *treeReader) read(h plumbing.Hash, limit int64) ([]byte, error) {
	b, err := object.GetBlob(r.s, h)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(b.Size, limit+1)))
	if _, err := buf.ReadFrom(io.LimitReader(rd, limit+1)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// manifestFile is one file the loader reads.
type manifestFile struct {
	// Path is the path as walked from the source path (through links),
	// which is what problems and provenance name.
	Path string
	// Real is the path of the blob after following links; write-back
	// edits it.
	Real string
	Blob plumbing.Hash
	// Problem, if set, is why the file cannot be read; the file then only
	// contributes that problem.
	Problem string
}

// manifestFiles lists the files under root that manifest.Load would read
// from a checkout of the tree, with the same rules: .yaml, .yml and .json
// files, hidden files and folders skipped, linked files read, linked
// folders not followed, a root naming a file read whatever its extension.
// On top, any symbolic link under root that points outside the repository
// is a problem, whatever its name: it can only be a mistake or an attack.
func (r *treeReader) manifestFiles(root string, maxFiles int) ([]manifestFile, error) {
	top, err := r.resolve(root, true)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", root, err)
	}
	w := &walker{r: r, maxFiles: maxFiles}
	if !top.isDir() {
		if !isFile(top.entry.Mode) {
			return nil, fmt.Errorf("path %q: not a file or folder", root)
		}
		w.add(manifestFile{Path: root, Real: top.path, Blob: top.entry.Hash})
		return w.files, w.err
	}
	if err := w.walk(top, root); err != nil {
		return nil, err
	}
	return w.files, nil
}

type walker struct {
	r        *treeReader
	maxFiles int
	files    []manifestFile
	err      error
}

func (w *walker) add(f manifestFile) {
	if len(w.files) == w.maxFiles {
		w.err = &manifest.LimitError{Limit: "WithMaxFiles", Max: w.maxFiles, Path: f.Path}
		return
	}
	w.files = append(w.files, f)
}

func isFile(m filemode.FileMode) bool {
	return m == filemode.Regular || m == filemode.Executable || m == filemode.Deprecated
}

func isManifest(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// walk visits dir (resolved) whose walked path is shown.
func (w *walker) walk(dir resolved, shown string) error {
	t, err := w.r.tree(dir.path, dir.entry.Hash)
	if err != nil {
		return err
	}
	// Lexical order, as fs.WalkDir; Git sorts folders as if their names
	// ended in "/".
	entries := slices.Clone(t.Entries)
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range entries {
		if w.err != nil {
			return w.err
		}
		walked := joinPath(shown, e.Name)
		real := joinPath(dir.path, e.Name)
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
			// Git refuses such trees, but a crafted one can be pushed to a
			// server that does not check.
			w.add(manifestFile{Path: joinPath(shown, strings.ToValidUTF8(e.Name, "?")), Problem: errBadName.Error()})
			continue
		}
		if strings.HasPrefix(e.Name, ".") {
			continue
		}
		switch {
		case e.Mode == filemode.Dir:
			if err := w.walk(resolved{path: real, entry: e}, walked); err != nil {
				return err
			}
		case e.Mode == filemode.Symlink:
			w.link(real, walked)
		case isFile(e.Mode) && isManifest(e.Name):
			w.add(manifestFile{Path: walked, Real: real, Blob: e.Hash})
		}
		// Submodules (gitlinks) have no content in this repository.
	}
	return w.err
}

func (w *walker) link(real, walked string) {
	target, err := w.r.resolve(real, true)
	switch {
	case errors.Is(err, errEscapes):
		w.add(manifestFile{Path: walked, Problem: "cannot read: " + errEscapes.Error()})
	case !isManifest(walked):
	case err != nil:
		w.add(manifestFile{Path: walked, Problem: "cannot read: " + linkProblem(err)})
	case isFile(target.entry.Mode):
		w.add(manifestFile{Path: walked, Real: target.path, Blob: target.entry.Hash})
	}
	// Linked folders are not followed, which rules out cycles.
}

func linkProblem(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "symbolic link target does not exist"
	}
	return err.Error()
}

func joinPath(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}
