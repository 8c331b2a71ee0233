package gitsync

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/go-git/go-billy/v5"
)

// go-git writes a loose ref (and the config) in place: it opens the file
// with O_CREATE, truncates it and writes the new content. A process killed
// between those steps leaves an empty ref file, and every later fetch then
// fails with "ref file is empty" until someone deletes it by hand. The
// mirror's filesystem therefore gives go-git, for these files, a file that
// lives in memory until it is closed and then replaces the file on disk in
// one rename: after a crash the file holds the old content or the new,
// never a part. Loose objects and packs need none of this: go-git writes
// them to temporary files and renames them itself.

// replacedInPlace reports whether go-git rewrites the file name (relative
// to the repository) in place.
func replacedInPlace(name string) bool {
	name = path.Clean(strings.ReplaceAll(name, "\\", "/"))
	return name == "HEAD" || name == "config" || strings.HasPrefix(name, "refs/")
}

// replaceTmpPrefix starts the names of replaceFile's temporary files.
const replaceTmpPrefix = ".sluice-replace-"

func writes(flag int) bool {
	return flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0
}

// replaceFile is an open ref or config file whose writes reach the disk
// only on Close, through a temporary file renamed over the original. Lock
// and Unlock do nothing: the mirror is written by one process, and within
// it under Syncer.repoMu.
type replaceFile struct {
	fs     billy.Filesystem
	name   string
	perm   os.FileMode
	buf    []byte
	pos    int64
	dirty  bool
	closed bool
}

func openReplaceFile(fsys billy.Filesystem, name string, flag int, perm os.FileMode) (*replaceFile, error) {
	f := &replaceFile{fs: fsys, name: name, perm: perm}
	if flag&os.O_TRUNC != 0 {
		f.dirty = true // O_TRUNC on an existing file empties it, even with no write
	} else {
		old, err := readAll(fsys, name)
		switch {
		case err == nil:
			f.buf = old
		case errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE != 0:
			f.dirty = true // created, even if nothing is written
		default:
			return nil, err
		}
	}
	if flag&os.O_APPEND != 0 {
		f.pos = int64(len(f.buf))
	}
	return f, nil
}

func readAll(fsys billy.Filesystem, name string) ([]byte, error) {
	r, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func (f *replaceFile) Name() string { return f.name }

func (f *replaceFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *replaceFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset", f.name)
	}
	if off >= int64(len(f.buf)) {
		return 0, io.EOF
	}
	n := copy(p, f.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *replaceFile) Seek(offset int64, whence int) (int64, error) {
	if f.closed {
		return 0, os.ErrClosed
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.pos + offset
	case io.SeekEnd:
		abs = int64(len(f.buf)) + offset
	default:
		return 0, fmt.Errorf("seek %s: bad whence %d", f.name, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("seek %s: negative position", f.name)
	}
	f.pos = abs
	return abs, nil
}

func (f *replaceFile) Write(p []byte) (int, error) {
	if f.closed {
		return 0, os.ErrClosed
	}
	end := f.pos + int64(len(p))
	if end > int64(len(f.buf)) {
		f.buf = append(f.buf, make([]byte, end-int64(len(f.buf)))...)
	}
	copy(f.buf[f.pos:], p)
	f.pos = end
	f.dirty = true
	return len(p), nil
}

func (f *replaceFile) Truncate(size int64) error {
	if f.closed {
		return os.ErrClosed
	}
	if size < 0 {
		return fmt.Errorf("truncate %s: negative size", f.name)
	}
	if size <= int64(len(f.buf)) {
		f.buf = f.buf[:size]
	} else {
		f.buf = append(f.buf, make([]byte, size-int64(len(f.buf)))...)
	}
	f.dirty = true
	return nil
}

func (f *replaceFile) Lock() error   { return nil }
func (f *replaceFile) Unlock() error { return nil }

// Close writes the content to a temporary file beside the original, syncs
// it and renames it over the original.
func (f *replaceFile) Close() error {
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	if !f.dirty {
		return nil
	}
	if err := f.fs.MkdirAll(path.Dir(f.name), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", f.name, err)
	}
	// The temporary file is made in the repository's top folder, not
	// beside the ref: go-git takes every file under refs/ for a ref, and
	// one left by a crash there would be read as a broken one. discard
	// deletes those left at the top.
	tmp, err := f.fs.TempFile("", replaceTmpPrefix)
	if err != nil {
		return fmt.Errorf("write %s: %w", f.name, err)
	}
	_, werr := tmp.Write(f.buf)
	if werr == nil {
		if s, ok := tmp.(interface{ Sync() error }); ok {
			werr = s.Sync()
		}
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = f.fs.Rename(tmp.Name(), f.name)
	}
	if werr != nil {
		_ = f.fs.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", f.name, werr)
	}
	return nil
}
