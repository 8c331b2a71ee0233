package gitsync

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/sluicehq/sluice/internal/gittest"
)

// transports are the ways a test reaches its remote.
var transports = []struct {
	name string
	url  func(t *testing.T, r *remote) string
}{
	{"file", func(t *testing.T, r *remote) string { return r.URL() }},
	{"http", func(t *testing.T, r *remote) string { return serveHTTP(t, r.Root).repoURL() }},
}

func TestSyncFirstAndIncremental(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			first := r.Push("two rollouts", map[string]string{
				"deploy/a.yaml":         rollout("a", "v1"),
				"deploy/nested/b.yaml":  rollout("b", "v1"),
				"deploy/.hidden/x.yaml": "not: [valid",
				"deploy/README.md":      "# not read",
				"other/c.yaml":          rollout("c", "v1"), // outside the path
			})
			s, reg := newTestSyncer(t, Source{URL: tr.url(t, r), Branch: "main", Path: "deploy"})

			st := s.Sync(context.Background())
			if st.Err != nil {
				t.Fatalf("first sync: %v", st.Err)
			}
			snap := st.Applied
			if snap.Commit.SHA != first || st.Head != first {
				t.Fatalf("applied %s, head %s; want %s", snap.Commit.SHA, st.Head, first)
			}
			if got := refs(snap); got != "Rollout a, Rollout b" {
				t.Errorf("objects: %s", got)
			}
			d, ok := snap.Lookup(ObjectRef{Kind: "Rollout", Name: "b"})
			if !ok {
				t.Fatal("Rollout b not found")
			}
			if d.Provenance.Commit != first || d.Provenance.Path != "deploy/nested/b.yaml" ||
				d.Provenance.CommitTime == nil || d.Provenance.CommitTime.IsZero() || snap.Commit.Author != "Dev <dev@example.com>" {
				t.Errorf("provenance: %+v, commit %+v", d.Provenance, snap.Commit)
			}
			if a := d.Annotations(); a[AnnotationCommit] != first || a[AnnotationPath] != "deploy/nested/b.yaml" {
				t.Errorf("annotations: %v", a)
			}

			second := r.Push("b to v2", map[string]string{"deploy/nested/b.yaml": rollout("b", "v2")})
			st = s.Sync(context.Background())
			if st.Err != nil || appliedSHA(st) != second {
				t.Fatalf("incremental sync: applied %s, err %v; want %s", appliedSHA(st), st.Err, second)
			}
			if d, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "b"}); d.Rollout.Spec.Backend.Version != "v2" {
				t.Errorf("b has version %s, want v2", d.Rollout.Spec.Backend.Version)
			}
			// a.yaml did not change: the same decoded object is reused.
			a1, _ := snap.Lookup(ObjectRef{Kind: "Rollout", Name: "a"})
			a2, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "a"})
			if a1.Rollout != a2.Rollout {
				t.Error("unchanged file was parsed again")
			}
			if a2.Provenance.Commit != second {
				t.Errorf("unchanged file's provenance names %s, want the new commit", a2.Provenance.Commit)
			}
			if v := metricValue(t, reg, "sluice_gitsync_last_applied_commit_info", "commit", second); v != 1 {
				t.Errorf("last applied commit metric = %v", v)
			}
			if v := metricValue(t, reg, "sluice_gitsync_last_applied_commit_info", "commit", first); v != -1 {
				t.Errorf("old commit still exported: %v", v)
			}
			if v := metricValue(t, reg, "sluice_gitsync_fetch_duration_seconds"); v != 2 {
				t.Errorf("fetches observed = %v, want 2", v)
			}
			if v := metricValue(t, reg, "sluice_gitsync_last_fetch_timestamp_seconds"); v <= 0 {
				t.Errorf("last fetch time = %v", v)
			}
		})
	}
}

func refs(s *Snapshot) string {
	var out []string
	for _, d := range s.Objects {
		out = append(out, d.Ref().String())
	}
	return strings.Join(out, ", ")
}

func TestForcePush(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	base := r.Push("base", map[string]string{"a.yaml": rollout("a", "v1")})
	old := r.Push("v2", map[string]string{"a.yaml": rollout("a", "v2")})
	s, reg := newTestSyncer(t, Source{URL: r.URL(), Branch: "main"})
	if st := s.Sync(context.Background()); appliedSHA(st) != old {
		t.Fatalf("applied %s, want %s (err %v)", appliedSHA(st), old, st.Err)
	}

	// Rewrite history: drop v2, commit v3 on the base instead.
	gittest.Git(t, r.Work, "reset", "-q", "--hard", base)
	r.Write(map[string]string{"a.yaml": rollout("a", "v3")})
	gittest.Git(t, r.Work, "commit", "-q", "-am", "v3 instead")
	gittest.Git(t, r.Work, "push", "-q", "-f", "origin", "HEAD:main")
	forced := r.Head()

	st := s.Sync(context.Background())
	if st.Err != nil || appliedSHA(st) != forced {
		t.Fatalf("after force-push: applied %s, err %v; want %s", appliedSHA(st), st.Err, forced)
	}
	if st.Applied.ForcePushedOver != old {
		t.Errorf("ForcePushedOver = %q, want %s", st.Applied.ForcePushedOver, old)
	}
	if v := metricValue(t, reg, "sluice_gitsync_force_pushes_total"); v != 1 {
		t.Errorf("force pushes = %v, want 1", v)
	}
	// A normal push afterwards is not a force-push.
	next := r.Push("v4", map[string]string{"a.yaml": rollout("a", "v4")})
	if st := s.Sync(context.Background()); appliedSHA(st) != next || st.Applied.ForcePushedOver != "" {
		t.Errorf("after normal push: applied %s, forced over %q", appliedSHA(st), st.Applied.ForcePushedOver)
	}
}

func TestInvalidCommitRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		write func(r *remote)
		limit Limits
		kind  ErrorKind
		// want are substrings of the error, located as file:line: field.
		want []string
	}{
		{
			name: "invalid YAML in one file",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/b.yaml": "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: b\n  labels: [oops\n"})
			},
			kind: KindInvalidCommit,
			want: []string{"deploy/b.yaml:5: invalid YAML"},
		},
		{
			name: "unknown field",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/b.yaml": strings.Replace(rollout("b", "v2"), "    port: 9080\n", "    port: 9080\n    prot: 80\n", 1)})
			},
			kind: KindInvalidCommit,
			want: []string{`deploy/b.yaml:10: spec.service.prot: unknown field "prot"`},
		},
		{
			name: "validation error",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/b.yaml": strings.Replace(rollout("b", "v2"), "setWeight: 50", "setWeight: 150", 1)})
			},
			kind: KindInvalidCommit,
			want: []string{"deploy/b.yaml:17: spec.strategy.canary.steps[0].setWeight"},
		},
		{
			name:  "symlink escaping the repository",
			write: func(r *remote) { r.Symlink("deploy/passwd.yaml", "../../../../etc/passwd") },
			kind:  KindInvalidCommit,
			want:  []string{"deploy/passwd.yaml:1: cannot read: symbolic link points outside the repository"},
		},
		{
			name:  "absolute symlink to a folder",
			write: func(r *remote) { r.Symlink("deploy/etc", "/etc") },
			kind:  KindInvalidCommit,
			want:  []string{"deploy/etc:1: cannot read: symbolic link points outside the repository"},
		},
		{
			name: "duplicate rollout across files",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/z.yaml": rollout("a", "v9")})
			},
			kind: KindInvalidCommit,
			want: []string{`deploy/z.yaml:1: metadata.name: Duplicate value: "a": Rollout a is already defined at deploy/a.yaml:1`},
		},
		{
			name: "Istio object defined twice across files",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/istio.yaml": istioVS("reviews", "3s"), "deploy/more/istio.yaml": istioVS("reviews", "5s")})
			},
			kind: KindInvalidCommit,
			want: []string{`deploy/more/istio.yaml:1: metadata.name: Duplicate value: "reviews": VirtualService reviews is already defined at deploy/istio.yaml:1`},
		},
		{
			name: "malformed Istio object",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/istio.yaml": strings.Replace(istioVS("reviews", "3s"), "timeout:", "timout:", 1)})
			},
			kind: KindInvalidCommit,
			want: []string{`deploy/istio.yaml:12: spec.http[0].timout: unknown field "timout"`},
		},
		{
			name: "file too large",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/big.yaml": "# " + strings.Repeat("x", 5000) + "\n"})
			},
			limit: Limits{MaxFileSize: 4096},
			kind:  KindInvalidCommit,
			want:  []string{"deploy/big.yaml:1: file is larger than 4096 bytes"},
		},
		{
			name: "too many objects",
			write: func(r *remote) {
				r.Write(map[string]string{"deploy/c.yaml": rollout("c", "v1") + "---\n" + rollout("d", "v1")})
			},
			limit: Limits{MaxObjects: 3},
			kind:  KindLimit,
			want:  []string{"more than 3 objects"},
		},
		{
			name:  "path removed",
			write: func(r *remote) { gittest.Git(r.t, r.Work, "rm", "-q", "-r", "-f", "deploy") },
			kind:  KindInvalidCommit,
			want:  []string{"deploy:1: path \"deploy\": file does not exist"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			good := r.Push("good", map[string]string{"deploy/a.yaml": rollout("a", "v1"), "deploy/b.yaml": rollout("b", "v1")})
			s, reg := newTestSyncer(t, Source{URL: r.URL(), Branch: "main", Path: "deploy"},
				func(o *Options) { o.Limits = tt.limit })
			if st := s.Sync(context.Background()); st.Err != nil {
				t.Fatal(st.Err)
			}
			r.Write(map[string]string{"deploy/a.yaml": rollout("a", "v2")})
			tt.write(r)
			bad := r.Push("bad", nil)

			st := s.Sync(context.Background())
			if appliedSHA(st) != good {
				t.Fatalf("applied %s, want the last good commit %s", appliedSHA(st), good)
			}
			if d, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "a"}); d.Rollout.Spec.Backend.Version != "v1" {
				t.Error("a change from the rejected commit was applied")
			}
			if KindOf(st.Err) != tt.kind || st.Head != bad {
				t.Fatalf("err %v (kind %q), head %s; want kind %q, head %s", st.Err, KindOf(st.Err), st.Head, tt.kind, bad)
			}
			msg := st.Err.Error()
			for _, w := range append(tt.want, "commit "+bad) {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			if v := metricValue(t, reg, "sluice_gitsync_error", "kind", string(tt.kind)); v != 1 {
				t.Errorf("error gauge = %v, want 1", v)
			}
			// Polling the same bad commit keeps the error, without
			// counting it again.
			if st := s.Sync(context.Background()); KindOf(st.Err) != tt.kind || appliedSHA(st) != good {
				t.Errorf("second sync: applied %s, err %v", appliedSHA(st), st.Err)
			}
			if v := metricValue(t, reg, "sluice_gitsync_errors_total", "kind", string(tt.kind)); v != 1 {
				t.Errorf("errors_total = %v, want 1", v)
			}

			// A good commit clears the error.
			gittest.Git(t, r.Work, "rm", "-q", "-r", "--ignore-unmatch", "deploy")
			fixed := r.Push("fix", map[string]string{"deploy/a.yaml": rollout("a", "v3"), "deploy/b.yaml": rollout("b", "v1")})
			st = s.Sync(context.Background())
			if st.Err != nil || appliedSHA(st) != fixed {
				t.Fatalf("after fix: applied %s, err %v", appliedSHA(st), st.Err)
			}
			if v := metricValue(t, reg, "sluice_gitsync_error", "kind", string(tt.kind)); v != 0 {
				t.Errorf("error gauge after fix = %v, want 0", v)
			}
		})
	}
}

func TestSymlinksInsideTheRepositoryAreRead(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	r.Write(map[string]string{"shared/a.yaml": rollout("a", "v1"), "shared/b.yaml": rollout("b", "v1")})
	r.Symlink("deploy/a.yaml", "../shared/a.yaml")
	r.Symlink("deploy/linked-dir", "../shared") // folders are not followed
	r.Symlink("deploy/missing.txt", "nowhere")  // not a manifest: ignored
	sha := r.Push("links", nil)
	s, _ := newTestSyncer(t, Source{URL: r.URL(), Branch: "main", Path: "deploy"})
	st := s.Sync(context.Background())
	if st.Err != nil || appliedSHA(st) != sha {
		t.Fatalf("applied %s, err %v", appliedSHA(st), st.Err)
	}
	if got := refs(st.Applied); got != "Rollout a" {
		t.Errorf("objects: %s, want only Rollout a", got)
	}
	if d := st.Applied.Objects[0]; d.Provenance.Path != "deploy/a.yaml" {
		t.Errorf("provenance path %s, want the link's path", d.Provenance.Path)
	}
}

func TestRemovedRolloutReported(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	r.Push("two", map[string]string{"a.yaml": rollout("a", "v1"), "b.yaml": rollout("b", "v1")})
	s, reg := newTestSyncer(t, Source{URL: r.URL(), Branch: "main"})
	s.Sync(context.Background())
	r.Push("remove b", map[string]string{"b.yaml": ""})
	st := s.Sync(context.Background())
	if st.Err != nil {
		t.Fatal(st.Err)
	}
	if got := fmt.Sprint(st.Applied.Removed); got != "[Rollout b]" {
		t.Errorf("removed = %s", got)
	}
	if _, ok := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "b"}); ok {
		t.Error("b is still desired")
	}
	if v := metricValue(t, reg, "sluice_gitsync_objects", "kind", "Rollout"); v != 1 {
		t.Errorf("objects gauge = %v, want 1", v)
	}
}

func TestUnreachableThenRecovery(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	srv := serveHTTP(t, r.Root)
	good := r.Push("good", map[string]string{"a.yaml": rollout("a", "v1")})
	s, reg := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main", Timeout: 2 * time.Second})
	s.Sync(context.Background())

	srv.down.Store(true)
	r.Push("unseen", map[string]string{"a.yaml": rollout("a", "v2")})
	st := s.Sync(context.Background())
	if KindOf(st.Err) != KindUnreachable || appliedSHA(st) != good {
		t.Fatalf("while down: applied %s, err %v (kind %q)", appliedSHA(st), st.Err, KindOf(st.Err))
	}
	if v := metricValue(t, reg, "sluice_gitsync_error", "kind", "unreachable"); v != 1 {
		t.Errorf("unreachable gauge = %v", v)
	}

	srv.down.Store(false)
	latest := r.Push("v3", map[string]string{"a.yaml": rollout("a", "v3")})
	st = s.Sync(context.Background())
	if st.Err != nil || appliedSHA(st) != latest {
		t.Fatalf("after recovery: applied %s, err %v", appliedSHA(st), st.Err)
	}
	if v := metricValue(t, reg, "sluice_gitsync_error", "kind", "unreachable"); v != 0 {
		t.Errorf("unreachable gauge after recovery = %v", v)
	}
}

func TestRemoteErrorsByKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, r *remote) Source
		kind  ErrorKind
	}{
		{"timeout", func(t *testing.T, r *remote) Source {
			srv := serveHTTP(t, r.Root)
			srv.hang.Store(true)
			return Source{URL: srv.repoURL(), Branch: "main", Timeout: 300 * time.Millisecond}
		}, KindUnreachable},
		{"connection refused", func(t *testing.T, r *remote) Source {
			return Source{URL: "http://" + freePort(t) + "/repo.git", Branch: "main"}
		}, KindUnreachable},
		{"missing credentials", func(t *testing.T, r *remote) Source {
			srv := serveHTTP(t, r.Root)
			srv.user, srv.password = "sluice", "s3cret"
			return Source{URL: srv.repoURL(), Branch: "main"}
		}, KindAuth},
		{"wrong password", func(t *testing.T, r *remote) Source {
			srv := serveHTTP(t, r.Root)
			srv.user, srv.password = "sluice", "s3cret"
			return Source{URL: srv.repoURL(), Branch: "main", Auth: Auth{Username: "sluice", Password: "guess"}}
		}, KindAuth},
		{"no such repository", func(t *testing.T, r *remote) Source {
			return Source{URL: serveHTTP(t, r.Root).URL + "/nope.git", Branch: "main"}
		}, KindNotFound},
		{"no such branch", func(t *testing.T, r *remote) Source {
			return Source{URL: r.URL(), Branch: "release"}
		}, KindNotFound},
		{"no such commit", func(t *testing.T, r *remote) Source {
			return Source{URL: r.URL(), Commit: strings.Repeat("ab", 20)}
		}, KindNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			r.Push("c", map[string]string{"a.yaml": rollout("a", "v1")})
			s, _ := newTestSyncer(t, tt.setup(t, r))
			start := time.Now()
			st := s.Sync(context.Background())
			if KindOf(st.Err) != tt.kind || st.Applied != nil {
				t.Fatalf("err %v (kind %q), applied %v; want kind %q", st.Err, KindOf(st.Err), appliedSHA(st), tt.kind)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestHTTPBasicAuth(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	srv := serveHTTP(t, r.Root)
	srv.user, srv.password = "sluice", "s3cret"
	sha := r.Push("c", map[string]string{"a.yaml": rollout("a", "v1")})
	for _, auth := range []Auth{{Username: "sluice", Password: "s3cret"}, {Username: "sluice", Token: "s3cret"}} {
		s, _ := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main", Auth: auth})
		if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != sha {
			t.Errorf("auth %+v: applied %s, err %v", auth, appliedSHA(st), st.Err)
		}
	}
}

func TestTagAndCommitSources(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	v1 := r.Push("v1", map[string]string{"a.yaml": rollout("a", "v1")})
	gittest.Git(t, r.Work, "tag", "-a", "-m", "release", "release-1")
	gittest.Git(t, r.Work, "push", "-q", "origin", "release-1")
	r.Push("v2", map[string]string{"a.yaml": rollout("a", "v2")})

	for _, src := range []Source{
		{URL: r.URL(), Tag: "release-1"},
		{URL: r.URL(), Commit: v1},
	} {
		s, _ := newTestSyncer(t, src)
		st := s.Sync(context.Background())
		if st.Err != nil || appliedSHA(st) != v1 {
			t.Errorf("%+v: applied %s, err %v; want %s", src, appliedSHA(st), st.Err, v1)
		}
	}
}

func TestRestartReusesMirrorAndLastGoodCommit(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	good := r.Push("good", map[string]string{"a.yaml": rollout("a", "v1")})
	dir := t.TempDir()
	src := Source{URL: r.URL(), Branch: "main"}
	s1, _ := newTestSyncer(t, src, func(o *Options) { o.MirrorDir = dir })
	if st := s1.Sync(context.Background()); st.Err != nil {
		t.Fatal(st.Err)
	}
	bad := r.Push("bad", map[string]string{"a.yaml": "kind: [\n"})

	// A new process on the same mirror finds the old objects before it
	// fetches anything.
	s2, _ := newTestSyncer(t, src, func(o *Options) { o.MirrorDir = dir })
	if _, err := s2.mirror.repo.CommitObject(plumbing.NewHash(good)); err != nil {
		t.Fatalf("mirror not reused: %v", err)
	}
	// The head is bad, so the commit applied before the restart is served.
	st := s2.Sync(context.Background())
	if appliedSHA(st) != good || KindOf(st.Err) != KindInvalidCommit || st.Head != bad {
		t.Fatalf("after restart: applied %s, head %s, err %v", appliedSHA(st), st.Head, st.Err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  Source
		want string
	}{
		{"no url", Source{Branch: "main"}, "url is required"},
		{"two refs", Source{URL: "file:///x", Branch: "main", Tag: "v1"}, "exactly one of"},
		{"short commit", Source{URL: "file:///x", Commit: "abc123"}, "full 40-character"},
		{"dot-dot path", Source{URL: "file:///x", Branch: "main", Path: "deploy/../../etc"}, `must not contain ".."`},
		{"absolute path", Source{URL: "file:///x", Branch: "main", Path: "/etc"}, "relative"},
		{"bad branch", Source{URL: "file:///x", Branch: "a..b"}, "not a valid branch"},
		{"tiny interval", Source{URL: "file:///x", Branch: "main", Interval: time.Millisecond}, "at least"},
		{"ssh without known hosts", Source{URL: "ssh://git@example.com/repo.git", Branch: "main", Auth: Auth{SSHKey: testSSHKey(t)}}, "knownHosts is required"},
		{"ssh without key", Source{URL: "ssh://git@example.com/repo.git", Branch: "main"}, "sshKey is required"},
		{"token for ssh", Source{URL: "ssh://git@example.com/repo.git", Branch: "main", Auth: Auth{Token: "t"}}, "HTTP credentials"},
		{"key for https", Source{URL: "https://example.com/repo.git", Branch: "main", Auth: Auth{SSHKey: []byte("k")}}, "SSH credentials"},
		{"token and password", Source{URL: "https://example.com/repo.git", Branch: "main", Auth: Auth{Token: "t", Password: "p"}}, "only one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.src, Options{MirrorDir: t.TempDir()})
			if KindOf(err) != KindConfig || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want a config error containing %q", err, tt.want)
			}
		})
	}
}

func TestRunPollsAndWatchWakes(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	r.Push("one", map[string]string{"a.yaml": rollout("a", "v1")})
	s, _ := newTestSyncer(t, Source{URL: r.URL(), Branch: "main", Interval: time.Second})
	runSyncer(t, s)
	waitFor(t, s, "first commit", func(st State) bool { return st.Applied != nil })
	second := r.Push("two", map[string]string{"a.yaml": rollout("a", "v2")})
	st := waitFor(t, s, "second commit by polling", func(st State) bool { return appliedSHA(st) == second })
	if st.Generation < 2 {
		t.Errorf("generation %d, want at least 2", st.Generation)
	}
}

func TestMirrorIsRepacked(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	s, _ := newTestSyncer(t, Source{URL: r.URL(), Branch: "main"})
	s.mirror.maxPacks = 2
	r.Push("v1", map[string]string{"reviews.yaml": revertedStandaloneFile()})
	for i := range 5 {
		sha := r.Push(fmt.Sprintf("change %d", i), map[string]string{"other.yaml": rollout("other", fmt.Sprintf("v%d", i))})
		if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != sha {
			t.Fatalf("sync %d: applied %s, err %v", i, appliedSHA(st), st.Err)
		}
	}
	packs, err := s.mirror.repo.Storer.(storer.PackedObjectStorer).ObjectPacks()
	if err != nil || len(packs) > 3 {
		t.Errorf("%d packs (err %v), want at most 3", len(packs), err)
	}
	// History survived the repack: a revert can still find v1's backend.
	r.Push("v2", map[string]string{"reviews.yaml": standaloneFile})
	req := standaloneRevert()
	req.StableBackend = nil
	if res, err := s.Revert(context.Background(), req); err != nil || res.Outcome != RevertPushed {
		t.Fatalf("revert after repack: %+v, %v", res, err)
	}
}
