package gitsync

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-logr/logr"
)

// A ref write reaches the disk only when go-git closes the file, in one
// rename: until then the old content (or no file) is on disk, never an
// empty or partial one, which is what a kill -9 between go-git's truncate
// and write used to leave ("ref file is empty" on every later fetch).
func TestRefWritesReplaceTheFileWhole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mfs := newMirrorFS(dir)
	const name = "refs/remotes/origin/main"
	onDisk := func() (string, bool) {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if errors.Is(err, fs.ErrNotExist) {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(b), true
	}

	// Created: nothing on disk until Close.
	f, err := mfs.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := onDisk(); ok {
		t.Fatal("opening a new ref created the file on disk before anything was written")
	}
	if _, err := f.Write([]byte("1111\n")); err != nil {
		t.Fatal(err)
	}
	if _, ok := onDisk(); ok {
		t.Fatal("a write reached the disk before Close")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := onDisk(); got != "1111\n" {
		t.Fatalf("after Close: %q, want %q", got, "1111\n")
	}

	// Rewritten as go-git does with an expected old value: read, seek,
	// truncate, write. The old content stays on disk until Close.
	f, err = mfs.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Lock(); err != nil {
		t.Fatal(err)
	}
	old, err := io.ReadAll(f)
	if err != nil || string(old) != "1111\n" {
		t.Fatalf("read %q, %v; want the old content", old, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if got, _ := onDisk(); got != "1111\n" {
		t.Fatalf("after truncate, before Close: %q on disk, want the old content", got)
	}
	if _, err := f.Write([]byte("22\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := onDisk(); got != "22\n" {
		t.Fatalf("after Close: %q, want %q", got, "22\n")
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v, want os.ErrClosed", err)
	}

	// Opened for reading only: the OS's file, as before.
	r, err := mfs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(*replaceFile); ok {
		t.Error("a read-only open got a replaceFile")
	}
	_ = r.Close()

	// Nothing but the ref itself is left in refs/ and at the top.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), replaceTmpPrefix) {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestReplacedInPlace(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"HEAD": true, "config": true, "refs/heads/main": true, "refs/sluice/applied": true,
		"./refs/remotes/origin/main": true, "packed-refs": false, "objects/pack/tmp_pack_1": false,
		"objects/ab/cdef": false, "refsx": false, "description": false,
	} {
		if got := replacedInPlace(name); got != want {
			t.Errorf("replacedInPlace(%q) = %v, want %v", name, got, want)
		}
	}
}

// Through go-git: a mirror's refs and config written by go-git read back,
// and a leftover temporary file of a write that a crash interrupted is
// deleted when the mirror is opened again.
func TestMirrorRefsThroughGoGit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	repo, _, err := openMirrorRepo(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	h := plumbing.NewHash("0123456789abcdef0123456789abcdef01234567")
	for _, name := range []plumbing.ReferenceName{appliedRef, "refs/remotes/origin/main"} {
		if err := repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
			t.Fatal(err)
		}
	}
	h2 := plumbing.NewHash("89abcdef0123456789abcdef0123456789abcdef")
	if err := repo.Storer.CheckAndSetReference(plumbing.NewHashReference(appliedRef, h2), plumbing.NewHashReference(appliedRef, h)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, replaceTmpPrefix+"123"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	repo, mfs, err := openMirrorRepo(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := mfs.discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, replaceTmpPrefix+"123")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temporary file: %v, want it deleted", err)
	}
	ref, err := repo.Reference(appliedRef, false)
	if err != nil || ref.Hash() != h2 {
		t.Fatalf("applied ref %v, %v; want %s", ref, err, h2)
	}
	iter, err := repo.References()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := iter.ForEach(func(*plumbing.Reference) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n < 3 { // HEAD, applied, origin/main
		t.Errorf("%d references, want at least 3", n)
	}
	if _, err := repo.Config(); err != nil {
		t.Errorf("config: %v", err)
	}
}

// A mirror with a ref file emptied by a crash of an older Sluice is
// rebuilt when opened, not kept failing every fetch.
func TestOpenMirrorRebuildsEmptyRefFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := Source{Name: "apps", URL: "file:///nowhere.git", Branch: "main"}
	if _, _, err := openMirror(dir, src, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "repo.git", "refs", "remotes", "origin", "main")
	if err := os.MkdirAll(filepath.Dir(broken), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	repo, _, err := openMirror(dir, src, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := readableRefs(repo); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
	if _, err := os.Stat(broken); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty ref file still there (%v)", err)
	}
}
