package gitsync

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/gittest"
)

// Test repositories are real (internal/gittest): a bare repository made by
// the git CLI, changed through a working clone and `git push`, and read by
// the Syncer over file:// or smart HTTP (git http-backend behind
// net/http/cgi).

// remote is a test repository the Syncer reads.
type remote struct {
	*gittest.Repo
	t testing.TB
}

func newRemote(t testing.TB) *remote {
	t.Helper()
	r := &remote{Repo: gittest.New(t), t: t}
	// git http-backend accepts pushes only when told to.
	gittest.Git(t, r.Bare, "config", "http.receivepack", "true")
	return r
}

// gitServer serves the remotes under root over smart HTTP.
type gitServer struct {
	*httptest.Server
	// down makes the server drop connections, as an unreachable host would.
	down atomic.Bool
	// hang makes requests wait until the test ends.
	hang atomic.Bool
	// user and password, when set, are required (basic auth).
	user, password string

	// adverts counts ref advertisements for fetches (ls-remote, or the
	// start of a fetch), packRequests the requests for a pack, and
	// packBytes the bytes answered to those; packsServing is how many
	// are still being answered (a stopped fetch's goes on until the
	// server notices).
	adverts, packRequests, packBytes, packsServing atomic.Int64

	mu sync.Mutex
	// hooks run once, before the next request of a push's stage is
	// served: "advertise" (the ref list a pusher starts from) or
	// "receive" (the update itself).
	hooks map[string]func()
}

func serveHTTP(t testing.TB, root string) *gitServer {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  append([]string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}, gittest.Env...),
	}
	s := &gitServer{}
	stop := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if s.hang.Load() {
			<-stop
			return
		}
		if s.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != s.user || p != s.password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		stage := ""
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
			stage = "receive"
		case r.URL.Query().Get("service") == "git-receive-pack":
			stage = "advertise"
		}
		s.mu.Lock()
		hook := s.hooks[stage]
		delete(s.hooks, stage)
		s.mu.Unlock()
		if hook != nil {
			hook()
		}
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			s.packRequests.Add(1)
			s.packsServing.Add(1)
			defer s.packsServing.Add(-1)
			w = &countingWriter{ResponseWriter: w, n: &s.packBytes}
		case r.URL.Query().Get("service") == "git-upload-pack":
			s.adverts.Add(1)
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(stop)
		s.Close()
	})
	return s
}

func (s *gitServer) repoURL() string { return s.URL + "/repo.git" }

// countingWriter adds the bytes of a response to n.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (s *gitServer) onNextPush(stage string, f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hooks == nil {
		s.hooks = map[string]func(){}
	}
	s.hooks[stage] = f
}

// newTestSyncer makes a Syncer with a fresh mirror folder, a test logger
// and its own metrics registry.
func newTestSyncer(t testing.TB, src Source, mod ...func(*Options)) (*Syncer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := Options{MirrorDir: t.TempDir(), Registerer: reg}
	if tt, ok := t.(*testing.T); ok {
		opts.Logger = testr.New(tt)
	}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// runSyncer runs s until the test ends.
func runSyncer(t *testing.T, s *Syncer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitFor waits until cond holds for the Syncer's state.
func waitFor(t *testing.T, s *Syncer, what string, cond func(State) bool) State {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		st, changed := s.Watch()
		if cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; state: applied=%v err=%v", what, appliedSHA(st), st.Err)
		}
	}
}

func appliedSHA(st State) string {
	if st.Applied == nil {
		return ""
	}
	return st.Applied.Commit.SHA
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// rollout renders a standalone Rollout manifest.
func rollout(name, version string, endpoints ...string) string {
	if len(endpoints) == 0 {
		endpoints = []string{"127.0.0.1:9080"}
	}
	var eps strings.Builder
	for _, e := range endpoints {
		fmt.Fprintf(&eps, "      - %s\n", e)
	}
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: %s
spec:
  service:
    name: %s
    hosts: [%s]
    port: 9080
  backend:
    version: %s
    endpoints:
%s  strategy:
    canary:
      steps:
        - setWeight: 50
        - pause: {}
`, name, name, name, version, eps.String())
}

// freePort returns a TCP address nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
