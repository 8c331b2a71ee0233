package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// rolloutFile is the quickstart file that names the released version.
const rolloutFile = "rollout.yaml"

// gitRepo is the demo's Git server and a developer's clone of it: Sluice
// fetches from the bare repository and pushes its revert commits there;
// the demo commits releases in the clone and pushes them, like a person.
// (A bare remote, because Git refuses pushes to a checked-out branch.)
type gitRepo struct {
	Bare, Work string
}

// URL is what Sluice is configured with.
func (r *gitRepo) URL() string { return "file://" + r.Bare }

// newRepo creates the repository under dir from the quickstart files, with
// v1 released on addr, and pushes the first commit. tune, if not nil, edits
// the files first (the tests shorten the pauses and intervals).
func newRepo(ctx context.Context, dir, quickstart, addr string, tune func(name, content string) (string, error)) (*gitRepo, error) {
	r := &gitRepo{Bare: filepath.Join(dir, "origin.git"), Work: filepath.Join(dir, "work")}
	if _, err := git(ctx, dir, "init", "--quiet", "--bare", "--initial-branch=main", r.Bare); err != nil {
		return nil, err
	}
	if _, err := git(ctx, dir, "clone", "--quiet", r.Bare, r.Work); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(quickstart, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no quickstart manifests in %s (%v)", quickstart, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read quickstart: %w", err)
		}
		content, name := string(b), filepath.Base(f)
		if tune != nil {
			if content, err = tune(name, content); err != nil {
				return nil, fmt.Errorf("tune %s: %w", name, err)
			}
		}
		if err := os.WriteFile(filepath.Join(r.Work, name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	if _, err := git(ctx, r.Work, "checkout", "--quiet", "-B", "main"); err != nil {
		return nil, err
	}
	if _, err := r.commitBackend(ctx, "v1", addr, "echo: quickstart, v1 serving"); err != nil {
		return nil, err
	}
	return r, nil
}

// Release commits the backend version and endpoint into rollout.yaml and
// pushes, as a developer releasing a version would. It returns the commit.
func (r *gitRepo) Release(ctx context.Context, version, addr, message string) (string, error) {
	// Sluice may have pushed a revert commit meanwhile.
	if _, err := git(ctx, r.Work, "pull", "--quiet", "--ff-only", "origin", "main"); err != nil {
		return "", err
	}
	return r.commitBackend(ctx, version, addr, message)
}

func (r *gitRepo) commitBackend(ctx context.Context, version, addr, message string) (string, error) {
	path := filepath.Join(r.Work, rolloutFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("release %s: %w", version, err)
	}
	content, err := setBackend(string(b), version, addr)
	if err != nil {
		return "", fmt.Errorf("release %s: %s: %w", version, rolloutFile, err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("release %s: %w", version, err)
	}
	if _, err := git(ctx, r.Work, "add", "--all"); err != nil {
		return "", err
	}
	if _, err := git(ctx, r.Work, "commit", "--quiet", "--message", message); err != nil {
		return "", err
	}
	if _, err := git(ctx, r.Work, "push", "--quiet", "origin", "main"); err != nil {
		return "", err
	}
	return git(ctx, r.Work, "rev-parse", "--short", "HEAD")
}

// Log is `git log --oneline -n` of the server's main branch.
func (r *gitRepo) Log(ctx context.Context, n int) (string, error) {
	return git(ctx, r.Bare, "log", "--oneline", fmt.Sprintf("-%d", n), "main")
}

// Head returns the server's head commit: short hash, author, full message.
func (r *gitRepo) Head(ctx context.Context) (hash, author, message string, err error) {
	out, err := git(ctx, r.Bare, "log", "-1", "--format=%h%x00%an%x00%B", "main")
	if err != nil {
		return "", "", "", err
	}
	parts := strings.SplitN(out, "\x00", 3)
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("unexpected git log output %q", out)
	}
	return parts[0], parts[1], parts[2], nil
}

// Show returns a file of the server's main branch.
func (r *gitRepo) Show(ctx context.Context, name string) (string, error) {
	return git(ctx, r.Bare, "show", "main:"+name)
}

var (
	versionLine  = regexp.MustCompile(`(?m)^(\s+version:\s*)\S+[ \t]*$`)
	endpointLine = regexp.MustCompile(`(?m)^(\s+-\s*)127\.0\.0\.1:\d+[ \t]*$`)
)

// setBackend edits the one backend version and the one endpoint of the
// quickstart Rollout as text, keeping its comments.
func setBackend(content, version, addr string) (string, error) {
	if n := len(versionLine.FindAllStringIndex(content, -1)); n != 1 {
		return "", fmt.Errorf("want exactly one backend version line, found %d", n)
	}
	if n := len(endpointLine.FindAllStringIndex(content, -1)); n != 1 {
		return "", fmt.Errorf("want exactly one 127.0.0.1 endpoint line, found %d", n)
	}
	content = versionLine.ReplaceAllString(content, "${1}"+version)
	return endpointLine.ReplaceAllString(content, "${1}"+addr), nil
}

// git runs the git CLI in dir, isolated from the user's configuration (a
// global commit.gpgsign would stop the demo), and returns its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Demo Developer", "GIT_AUTHOR_EMAIL=dev@example.com",
		"GIT_COMMITTER_NAME=Demo Developer", "GIT_COMMITTER_EMAIL=dev@example.com",
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
