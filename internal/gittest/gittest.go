// Package gittest makes real Git repositories for tests: a bare repository
// made by the git CLI, and a working clone that a test changes, commits to
// and pushes from, as a developer would. The code under test reads the
// bare repository over file:// (or smart HTTP, served from Root).
package gittest

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Env keeps the machine's and the user's Git configuration out of the
// tests, and names the author of their commits.
var Env = []string{
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=/dev/null",
	"GIT_TERMINAL_PROMPT=0",
	"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com",
	"GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com",
}

// Git runs the git CLI in dir and returns its trimmed output; a failure
// fails the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Repo is a bare repository, branch main, with a working clone.
type Repo struct {
	t testing.TB
	// Root is the folder holding the bare repository (an HTTP project
	// root); Bare is the repository, named repo.git; Work the clone.
	Root, Bare, Work string
}

// New makes an empty repository in a temporary folder.
func New(t testing.TB) *Repo {
	t.Helper()
	root := t.TempDir()
	r := &Repo{t: t, Root: root, Bare: filepath.Join(root, "repo.git"), Work: filepath.Join(root, "work")}
	Git(t, root, "init", "-q", "--bare", "-b", "main", r.Bare)
	Git(t, root, "init", "-q", "-b", "main", r.Work)
	Git(t, r.Work, "remote", "add", "origin", r.Bare)
	return r
}

// URL is the bare repository's file:// URL.
func (r *Repo) URL() string { return "file://" + r.Bare }

// Write sets files (slash-separated paths) in the working clone; an empty
// content deletes the file.
func (r *Repo) Write(files map[string]string) {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Work, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Symlink makes name in the working clone a symbolic link to target.
func (r *Repo) Symlink(name, target string) {
	r.t.Helper()
	p := filepath.Join(r.Work, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.t.Fatal(err)
	}
}

// Push writes files, commits everything in the working clone (an empty
// commit if nothing changed) and pushes it to main. It returns the commit.
func (r *Repo) Push(msg string, files map[string]string) string {
	r.t.Helper()
	r.Write(files)
	Git(r.t, r.Work, "add", "-A")
	Git(r.t, r.Work, "commit", "-q", "--allow-empty", "-m", msg)
	Git(r.t, r.Work, "push", "-q", "origin", "HEAD:main")
	return Git(r.t, r.Work, "rev-parse", "HEAD")
}

// Pull brings the working clone up to the remote's main, after the code
// under test pushed to it.
func (r *Repo) Pull() {
	r.t.Helper()
	Git(r.t, r.Work, "pull", "-q", "--ff-only", "origin", "main")
}

// Read returns a file of the remote's main branch.
func (r *Repo) Read(name string) string {
	r.t.Helper()
	return Git(r.t, r.Bare, "show", "main:"+name)
}

// Head is the remote's main.
func (r *Repo) Head() string {
	r.t.Helper()
	return Git(r.t, r.Bare, "rev-parse", "main")
}

// WriteRandom writes size bytes of incompressible data (a ChaCha8 stream
// from seed) to name in the working clone, streamed so that a file of
// hundreds of megabytes costs no memory. Git cannot shrink it: its pack
// is as large as the file.
func (r *Repo) WriteRandom(name string, size int64, seed uint64) {
	r.t.Helper()
	p := filepath.Join(r.Work, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		r.t.Fatal(err)
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	if _, err := io.CopyN(f, rand.NewChaCha8(key), size); err != nil {
		f.Close()
		r.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		r.t.Fatal(err)
	}
}
