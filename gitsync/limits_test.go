package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sluicehq/sluice/internal/gittest"
)

// limitTransports names the protocols a limit is tested over, each with
// its own way for an abandoned fetch to hang: git upload-pack on a pipe
// (file://), a CGI behind an HTTP server, upload-pack behind an SSH
// channel.
var limitTransports = []string{"file", "smart HTTP", "ssh"}

// limitSource serves r over the named protocol.
func limitSource(t *testing.T, r *remote, protocol string) Source {
	t.Helper()
	switch protocol {
	case "smart HTTP":
		return Source{URL: serveHTTP(t, r.Root).repoURL()}
	case "ssh":
		key := testSSHKey(t)
		srv := startSSHServer(t, r.Root, key)
		known := []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey) + "\n")
		return Source{URL: "ssh://git@" + srv.addr + "/repo.git", Auth: Auth{SSHKey: key, KnownHosts: known}}
	}
	return Source{URL: r.URL()}
}

// limitError returns the FetchLimitError in a State's error, or fails.
func limitError(t *testing.T, st State, limit string) *FetchLimitError {
	t.Helper()
	var le *FetchLimitError
	if KindOf(st.Err) != KindLimit || !errors.As(st.Err, &le) || le.Limit != limit {
		t.Fatalf("err %v (kind %q): want a %s limit error", st.Err, KindOf(st.Err), limit)
	}
	if !strings.Contains(st.Err.Error(), limit) {
		t.Errorf("error %q does not name the limit %s", st.Err, limit)
	}
	return le
}

// tmpObjectsLeft lists go-git's temporary object files in a mirror, on
// disk or still held open by this process.
func tmpObjectsLeft(t *testing.T, s *Syncer) []string {
	t.Helper()
	var left []string
	objects := filepath.Join(s.mirror.dir, "repo.git", "objects")
	for _, dir := range []string{objects, filepath.Join(objects, "pack")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				left = append(left, e.Name())
			}
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, objects) {
			left = append(left, "open: "+target)
		}
	}
	return left
}

func TestPackLimitStopsTheFetch(t *testing.T) {
	t.Parallel()
	const limit = 256 << 10
	for _, protocol := range limitTransports {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			good := r.Push("good", map[string]string{"apps/a.yaml": rollout("a", "v1")})
			src := limitSource(t, r, protocol)
			src.Branch, src.Path = "main", "apps"
			src.FetchLimits = FetchLimits{MaxPackBytes: limit}
			s, reg := newTestSyncer(t, src)
			if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != good {
				t.Fatalf("applied %s, err %v; want %s", appliedSHA(st), st.Err, good)
			}

			// 2 MiB that Git cannot compress, outside the watched path:
			// when the reader stops at 256 KiB, the sender has far more
			// to write than a pipe or socket buffer holds.
			r.WriteRandom("assets/big.bin", 2<<20, 1)
			big := r.Push("big", map[string]string{"apps/a.yaml": rollout("a", "v2")})
			// A fetch abandoned badly hangs whatever its context says, so
			// the deadline is also kept outside it.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan State, 1)
			go func() { done <- s.Sync(ctx) }()
			var st State
			select {
			case st = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the fetch over the limit hangs")
			}
			if ctx.Err() != nil {
				t.Fatalf("the fetch over the limit ran into the test's deadline: %v", st.Err)
			}
			le := limitError(t, st, LimitMaxPackBytes)
			if le.Max != limit || le.Size <= limit || le.Size > limit+128<<10 {
				t.Errorf("stopped at %d bytes with limit %d: want just past the limit", le.Size, le.Max)
			}
			if appliedSHA(st) != good {
				t.Errorf("applied %s, want the last good commit %s (the big one is %s)", appliedSHA(st), good, big)
			}
			if _, err := s.mirror.repo.CommitObject(plumbing.NewHash(big)); err == nil {
				t.Error("the commit of the stopped fetch is in the mirror")
			}
			if left := tmpObjectsLeft(t, s); len(left) > 0 {
				t.Errorf("the stopped fetch left %v", left)
			}
			if v := metricValue(t, reg, "sluice_gitsync_error", "kind", "limit"); v != 1 {
				t.Errorf("sluice_gitsync_error{kind=limit} = %v, want 1", v)
			}

			// A force-push that drops the big commit is fetched as usual.
			gittestRemoveAll(t, r, "assets")
			gittest.Git(t, r.Work, "reset", "-q", "--hard", good)
			r.Write(map[string]string{"apps/a.yaml": rollout("a", "v3")})
			gittest.Git(t, r.Work, "commit", "-q", "-am", "fixed")
			gittest.Git(t, r.Work, "push", "-q", "-f", "origin", "HEAD:main")
			fixed := r.Head()
			if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != fixed {
				t.Errorf("after the force-push: applied %s, err %v; want %s", appliedSHA(st), st.Err, fixed)
			}
		})
	}
}

func TestPushUnderTheLimitsSyncs(t *testing.T) {
	t.Parallel()
	for _, protocol := range limitTransports {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			r.WriteRandom("assets/data.bin", 96<<10, 2)
			sha := r.Push("c", map[string]string{"apps/a.yaml": rollout("a", "v1")})
			src := limitSource(t, r, protocol)
			src.Branch, src.Path = "main", "apps"
			src.FetchLimits = FetchLimits{MaxPackBytes: 256 << 10, MaxBlobBytes: 128 << 10, MaxFiles: 4}
			s, _ := newTestSyncer(t, src)
			if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != sha {
				t.Fatalf("applied %s, err %v; want %s", appliedSHA(st), st.Err, sha)
			}
		})
	}
}

func TestObjectLimitStopsTheFetch(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"assets/big.bin", "apps/big.yaml"} {
		for _, protocol := range limitTransports {
			t.Run(where+"/"+protocol, func(t *testing.T) {
				t.Parallel()
				r := newRemote(t)
				good := r.Push("good", map[string]string{"apps/a.yaml": rollout("a", "v1")})
				src := limitSource(t, r, protocol)
				src.Branch, src.Path = "main", "apps"
				src.FetchLimits = FetchLimits{MaxBlobBytes: 128 << 10}
				s, _ := newTestSyncer(t, src)
				if st := s.Sync(context.Background()); st.Err != nil {
					t.Fatal(st.Err)
				}
				r.WriteRandom(where, 200<<10, 3)
				r.Push("bad", map[string]string{"apps/a.yaml": rollout("a", "v2")})
				st := s.Sync(context.Background())
				le := limitError(t, st, LimitMaxBlobBytes)
				if le.Size != 200<<10 || le.Max != 128<<10 || le.Object != "blob" {
					t.Errorf("got %+v: want a blob of 204800 bytes, limit 131072", le)
				}
				for _, want := range []string{"blob", "204800", "131072"} {
					if !strings.Contains(st.Err.Error(), want) {
						t.Errorf("error %q does not name %s", st.Err, want)
					}
				}
				// The branch points at the refused commit: it is the head,
				// rejected, and the good one stays in force.
				if appliedSHA(st) != good || st.Head == good || st.Rejected == nil || st.Rejected.Commit != st.Head {
					t.Errorf("applied %s, head %s, rejected %v: want %s in force and the head rejected", appliedSHA(st), st.Head, st.Rejected, good)
				}
				if left := tmpObjectsLeft(t, s); len(left) > 0 {
					t.Errorf("the stopped fetch left %v", left)
				}
			})
		}
	}
}

// A delta can make a large object out of a small one already in the
// mirror: its own size says nothing, the size it announces for its
// result does.
func TestObjectLimitSeesThroughDeltas(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	r.WriteRandom("data.bin", 100<<10, 5)
	v1 := r.Push("v1", nil)
	f, err := os.OpenFile(filepath.Join(r.Work, "data.bin"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("grow "), 4<<10)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	v2 := r.Push("v2", nil)
	// A thin pack of v2 over v1, as a server sends a client that has v1.
	cmd := exec.Command("git", "pack-objects", "--thin", "--stdout", "--revs", "-q")
	cmd.Dir, cmd.Env = r.Bare, append(os.Environ(), gittest.Env...)
	cmd.Stdin = strings.NewReader(v2 + "\n^" + v1 + "\n")
	pack, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(pack) > 64<<10 {
		t.Fatalf("the pack is %d bytes: the new blob was not sent as a delta", len(pack))
	}
	err = scanPackObjects(bytes.NewReader(pack), 0, false, 110<<10)
	var le *FetchLimitError
	if !errors.As(err, &le) || le.Object != deltaObject || le.Size != 120<<10 {
		t.Errorf("got %v: want the delta's result of 122880 bytes over the limit", err)
	}
	if err := scanPackObjects(bytes.NewReader(pack), 0, false, 130<<10); err != nil {
		t.Errorf("under the limit: %v", err)
	}
}

func TestFileLimitRejectsTheCommit(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	good := r.Push("good", map[string]string{"apps/a.yaml": rollout("a", "v1")})
	s, reg := newTestSyncer(t, Source{URL: r.URL(), Branch: "main", Path: "apps", FetchLimits: FetchLimits{MaxFiles: 20}})
	if st := s.Sync(context.Background()); st.Err != nil {
		t.Fatal(st.Err)
	}
	files := map[string]string{}
	for i := range 30 {
		files[fmt.Sprintf("docs/%02d.md", i)] = fmt.Sprintf("page %d\n", i)
	}
	bad := r.Push("bad", files)
	st := s.Sync(context.Background())
	if le := limitError(t, st, LimitMaxFiles); le.Max != 20 || le.Size != 21 {
		t.Errorf("got %+v: want stopped at 21 of 20", le)
	}
	if appliedSHA(st) != good || st.Head != bad {
		t.Errorf("applied %s, head %s: want %s in force while %s is rejected", appliedSHA(st), st.Head, good, bad)
	}
	// A rejection is final for that commit: polling again neither
	// reloads it nor counts it twice.
	for range 2 {
		if st := s.Sync(context.Background()); KindOf(st.Err) != KindLimit || appliedSHA(st) != good {
			t.Errorf("next sync: applied %s, err %v", appliedSHA(st), st.Err)
		}
	}
	if v := metricValue(t, reg, "sluice_gitsync_errors_total", "kind", "limit"); v != 1 {
		t.Errorf("sluice_gitsync_errors_total{kind=limit} = %v, want 1", v)
	}
	gittestRemoveAll(t, r, "docs")
	fixed := r.Push("fixed", nil)
	if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != fixed {
		t.Errorf("after the fix: applied %s, err %v; want %s", appliedSHA(st), st.Err, fixed)
	}
}

// A file already in the mirror (fetched under a higher limit) is found
// by the check of the commit's tree, which names it.
func TestBlobLimitNamesTheFileInTheMirror(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	r.WriteRandom("assets/big.bin", 200<<10, 6)
	sha := r.Push("c", map[string]string{"apps/a.yaml": rollout("a", "v1")})
	src := Source{URL: r.URL(), Branch: "main", Path: "apps"}
	s, _ := newTestSyncer(t, src)
	if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != sha {
		t.Fatalf("applied %s, err %v", appliedSHA(st), st.Err)
	}
	src.FetchLimits.MaxBlobBytes = 128 << 10
	s2, _ := newTestSyncer(t, src, func(o *Options) { o.MirrorDir = s.opts.MirrorDir })
	st := s2.Sync(context.Background())
	le := limitError(t, st, LimitMaxBlobBytes)
	if le.Path != "assets/big.bin" || le.Size != 200<<10 || le.Max != 128<<10 {
		t.Errorf("got %+v: want assets/big.bin, 204800 bytes, limit 131072", le)
	}
	for _, want := range []string{"assets/big.bin", "204800", "131072"} {
		if !strings.Contains(st.Err.Error(), want) {
			t.Errorf("error %q does not name %s", st.Err, want)
		}
	}
	if st.Applied != nil {
		t.Errorf("applied %s: the only commit is over the limit", appliedSHA(st))
	}
}

func gittestRemoveAll(t *testing.T, r *remote, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(r.Work, filepath.FromSlash(n))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFetchLimitsConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limits FetchLimits
		want   FetchLimits
		err    string
	}{
		{FetchLimits{}, FetchLimits{DefaultMaxPackBytes, DefaultMaxBlobBytes, DefaultMaxFiles}, ""},
		{FetchLimits{MaxPackBytes: 1 << 20, MaxBlobBytes: 1, MaxFiles: 7}, FetchLimits{1 << 20, 1, 7}, ""},
		{FetchLimits{MaxPackBytes: -1}, FetchLimits{}, "fetchLimits.maxPackBytes -1"},
		{FetchLimits{MaxBlobBytes: -5}, FetchLimits{}, "fetchLimits.maxBlobBytes -5"},
		{FetchLimits{MaxFiles: -1}, FetchLimits{}, "fetchLimits.maxFiles -1"},
	}
	for _, tt := range tests {
		src, err := Source{URL: "file:///x", Branch: "main", FetchLimits: tt.limits}.withDefaults()
		switch {
		case tt.err != "":
			if KindOf(err) != KindConfig || !strings.Contains(fmt.Sprint(err), tt.err) {
				t.Errorf("%+v: err %v, want a config error with %q", tt.limits, err, tt.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tt.limits, err)
		case src.FetchLimits != tt.want:
			t.Errorf("%+v: got %+v, want %+v", tt.limits, src.FetchLimits, tt.want)
		}
	}
}

// The wrapper is installed for every protocol a Source accepts.
func TestTransportsAreWrapped(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{"http", "https", "ssh", "file"} {
		if _, ok := client.Protocols[scheme].(limitedTransport); !ok {
			t.Errorf("%s: transport %T is not limited", scheme, client.Protocols[scheme])
		}
	}
}
