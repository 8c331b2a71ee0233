package gitsync

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// memTree commits files (content) and links ("->target") with go-git in
// memory and returns a reader of the commit's tree.
func memTree(t *testing.T, files map[string]string) *treeReader {
	t.Helper()
	fsys := memfs.New()
	repo, err := git.Init(memory.NewStorage(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := fsys.Symlink(target, name); err != nil {
				t.Fatal(err)
			}
			continue
		}
		f, err := fsys.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@example.com", When: time.Unix(0, 0)}
	h, err := wt.Commit("c", &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(h)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	return newTreeReader(repo.Storer, tree)
}

func TestResolve(t *testing.T) {
	t.Parallel()
	r := memTree(t, map[string]string{
		"apps/a.yaml":         "a",
		"apps/link.yaml":      "->a.yaml",
		"apps/chain.yaml":     "->link.yaml",
		"apps/up.yaml":        "->../shared/s.yaml",
		"shared/s.yaml":       "s",
		"dirlink":             "->shared",
		"apps/escape.yaml":    "->../../etc/passwd",
		"apps/absolute.yaml":  "->/etc/passwd",
		"apps/loop.yaml":      "->loop.yaml",
		"apps/dangling.yaml":  "->nothing.yaml",
		"apps/sneaky.yaml":    "->../dirlink/../../etc/passwd",
		"apps/through.yaml":   "->../dirlink/s.yaml",
		"apps/dotdot-ok.yaml": "->../apps/../shared/s.yaml",
	})
	tests := []struct {
		path string
		want string // resolved path, or the error's text
		err  error
	}{
		{"apps/a.yaml", "apps/a.yaml", nil},
		{"apps/link.yaml", "apps/a.yaml", nil},
		{"apps/chain.yaml", "apps/a.yaml", nil},
		{"apps/up.yaml", "shared/s.yaml", nil},
		{"dirlink/s.yaml", "shared/s.yaml", nil},
		{"apps/through.yaml", "shared/s.yaml", nil},
		{"apps/dotdot-ok.yaml", "shared/s.yaml", nil},
		{"apps/escape.yaml", "", errEscapes},
		{"apps/absolute.yaml", "", errEscapes},
		{"apps/sneaky.yaml", "", errEscapes},
		{"apps/loop.yaml", "", errLoop},
		{"apps/dangling.yaml", "", fs.ErrNotExist},
		{"apps/a.yaml/x", "", fs.ErrInvalid},
	}
	for _, tt := range tests {
		got, err := r.resolve(tt.path, true)
		if !errors.Is(err, tt.err) || (tt.err == nil && got.path != tt.want) {
			t.Errorf("resolve(%s) = %q, %v; want %q, %v", tt.path, got.path, err, tt.want, tt.err)
		}
	}
}

func TestManifestFilesFollowsLoaderRules(t *testing.T) {
	t.Parallel()
	r := memTree(t, map[string]string{
		"d/b.yaml":          "b",
		"d/a.YML":           "a",
		"d/c.json":          "c",
		"d/notes.txt":       "n",
		"d/.hidden.yaml":    "h",
		"d/.git-crypt/x":    "x",
		"d/sub/z.yaml":      "z",
		"d/sub-1.yaml":      "s",
		"d/link.yaml":       "->sub/z.yaml",
		"d/linkdir":         "->sub",
		"d/out.txt":         "->../../x",
		"other/ignored.yml": "i",
	})
	files, err := r.manifestFiles("d", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		s := f.Path + "=" + f.Real
		if f.Problem != "" {
			s = f.Path + ": " + f.Problem
		}
		got = append(got, s)
	}
	want := []string{
		"d/a.YML=d/a.YML",
		"d/b.yaml=d/b.yaml",
		"d/c.json=d/c.json",
		"d/link.yaml=d/sub/z.yaml",
		"d/out.txt: cannot read: symbolic link points outside the repository",
		"d/sub/z.yaml=d/sub/z.yaml",
		"d/sub-1.yaml=d/sub-1.yaml",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	if _, err := r.manifestFiles("d", 3); err == nil || !strings.Contains(err.Error(), "more than 3 files") {
		t.Errorf("file limit: err = %v", err)
	}
	if files, err := r.manifestFiles("d/link.yaml", 10); err != nil || len(files) != 1 || files[0].Real != "d/sub/z.yaml" {
		t.Errorf("single-file root: %v, %v", files, err)
	}
}
