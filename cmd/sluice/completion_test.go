package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

const completionRollout = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: %s
  namespace: %s
spec:
  service: {name: %[1]s, hosts: [%[1]s], port: 9080}
  backend: {version: v1, endpoints: ["127.0.0.1:9001"]}
  strategy:
    canary:
      steps:
      - setWeight: 20
`

// lockedBuffer collects a command's log lines, written from its
// goroutines while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// complete runs cobra's completion request as a shell's script does, and
// returns the suggestions (with descriptions) and the directive.
func complete(t *testing.T, name string, args ...string) (suggestions []string, directive string) {
	t.Helper()
	var out, errOut strings.Builder
	code := runAs(context.Background(), name, append([]string{"__complete"}, args...), &out, &errOut)
	if code != exitOK {
		t.Fatalf("__complete %v: exit %d, stderr %q", args, code, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	directive = lines[len(lines)-1]
	if !strings.HasPrefix(directive, ":") {
		t.Fatalf("__complete %v: no directive in %q", args, out.String())
	}
	return lines[:len(lines)-1], directive
}

// TestAgainstRunServer runs `sluice run` in this process, with JSON logs
// at debug level and a read token, and completes rollout names against it
// as a shell would: through the same flags and client the commands use.
// Its log must be JSON lines throughout.
func TestAgainstRunServer(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs sluice run")
	}
	repo := gittest.New(t)
	repo.Push("rollouts", map[string]string{
		"reviews.yaml": fmt.Sprintf(completionRollout, "reviews", "default"),
		"ratings.yaml": fmt.Sprintf(completionRollout, "ratings", "default"),
		"cart.yaml":    fmt.Sprintf(completionRollout, "cart", "shop"),
	})
	token, sum, err := rolloutapi.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "http:\n  tokens:\n  - {name: ci, role: read, sha256: %s}\n", sum), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := freePort(t)
	server := "http://" + httpAddr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"run", "--config", cfg, "--git-url", repo.URL(), "--git-interval", "1s",
			"--state-dir", filepath.Join(dir, "state"), "--http-address", httpAddr, "--metrics-address", freePort(t),
			"--xds-address", freePort(t), "--ack-without-proxies", "--log-format", "json", "--log-level", "debug"}, &strings.Builder{}, logs)
	}()
	c := &rolloutapi.Client{BaseURL: server, Token: token}
	waitFor(t, time.Minute, "three rollouts on the server", func() bool {
		rs, err := c.List(context.Background())
		return err == nil && len(rs) == 3
	})

	at := []string{"--server", server, "--token", token}
	for _, tc := range []struct {
		name string
		args []string
		want []string // names, in order
	}{
		{"promote: the default namespace", append([]string{"promote"}, append(at, "")...), []string{"ratings", "reviews"}},
		{"a prefix", append([]string{"abort"}, append(at, "rev")...), []string{"reviews"}},
		{"-n", append([]string{"pause", "-n", "shop"}, append(at, "")...), []string{"cart"}},
		{"status takes NAME too", append([]string{"status"}, append(at, "r")...), []string{"ratings", "reviews"}},
		{"history", append([]string{"history", "--namespace=shop"}, append(at, "")...), []string{"cart"}},
		{"one NAME only", append([]string{"resume"}, append(at, "reviews", "")...), nil},
		{"no such namespace", append([]string{"retry", "-n", "nowhere"}, append(at, "")...), nil},
		{"a refused token", []string{"promote", "--server", server, "--token", "sluice_wrong", ""}, nil},
		{"no server there", []string{"promote", "--server", "http://127.0.0.1:1", ""}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, directive := complete(t, "sluice", tc.args...)
			if directive != ":4" { // ShellCompDirectiveNoFileComp: never file names
				t.Errorf("directive %s, want :4", directive)
			}
			var names []string
			for _, s := range got {
				name, desc, _ := strings.Cut(s, "\t")
				names = append(names, name)
				if desc == "" {
					t.Errorf("%q has no description (the phase)", s)
				}
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("completions %q, want %q", got, tc.want)
			}
		})
	}
	// Flag values complete without a server.
	if got, _ := complete(t, "sluice", "run", "--log-format", ""); !slices.Equal(got, []string{"text", "json"}) {
		t.Errorf("--log-format completes to %q", got)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("sluice run exit %d:\n%s", code, logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("sluice run did not stop")
	}
	var started, debug bool
	for i, l := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %d is not JSON: %v\n%s", i+1, err, l)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line %d has no %q: %s", i+1, k, l)
			}
		}
		started = started || m["msg"] == "sluice run started"
		debug = debug || m["level"] == "DEBUG"
	}
	if !started || !debug {
		t.Errorf("the log lacks the start line (%v) or any debug line (%v):\n%s", started, debug, logs.String())
	}
}

// listBackend lists what it is given, as a server that cannot be trusted
// might.
type listBackend struct{ rs []rolloutapi.Rollout }

func (b listBackend) List(context.Context) ([]rolloutapi.Rollout, error) { return b.rs, nil }
func (b listBackend) Get(context.Context, string, string) (rolloutapi.Rollout, error) {
	return rolloutapi.Rollout{}, rolloutapi.ErrNotFound
}
func (b listBackend) History(context.Context, string, string, int) ([]rolloutapi.Event, error) {
	return nil, rolloutapi.ErrNotFound
}
func (b listBackend) Command(context.Context, string, string, rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	return rolloutapi.CommandResponse{}, rolloutapi.ErrNotFound
}

// A server's names and phases reach the shell only when they are what a
// Kubernetes name and a phase can be: a newline or a tab would make
// suggestions of their own.
func TestCompletionOfUntrustedNames(t *testing.T) {
	t.Parallel()
	ro := func(name, phase string) rolloutapi.Rollout {
		r := rolloutapi.Rollout{Namespace: "default", Name: name}
		r.Status.Phase = v1alpha1.Phase(phase)
		return r
	}
	srv := httptest.NewServer(rolloutapi.NewHandler(listBackend{rs: []rolloutapi.Rollout{
		ro("reviews", "Healthy"),
		ro("ratings", "Paused\n--server=http://evil"),
		ro("evil\nrm -rf ~", "Healthy"),
		ro("tab\tname", ""),
		ro("$(id)", "Healthy"),
		ro("details", ""),
	}}, rolloutapi.HandlerOptions{InsecureNoAuth: true}))
	defer srv.Close()
	got, _ := complete(t, "sluice", "promote", "--server", srv.URL, "")
	want := []string{"reviews\tHealthy", "ratings\tunknown phase", "details\tno status yet"}
	if !slices.Equal(got, want) {
		t.Errorf("completions %q, want %q", got, want)
	}
}

// cobra's scripts for the four shells, which ask the binary itself
// (__complete) for every suggestion.
func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI("completion", shell)
			if code != exitOK || !strings.Contains(stdout, "__complete") || !strings.Contains(stdout, "sluice") {
				t.Errorf("completion %s: exit %d, %d bytes without a __complete call; stderr %q", shell, code, len(stdout), stderr)
			}
		})
	}
	if code, _, stderr := runCLI("completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d, want 2; stderr %q", code, stderr)
	}
}

// BenchmarkCompleteNames is what one Tab costs against a server holding
// 1,000 rollouts in 10 namespaces: the whole command line parsed, the list
// fetched over HTTP and filtered to the namespace.
func BenchmarkCompleteNames(b *testing.B) {
	var rs []rolloutapi.Rollout
	for i := range 1000 {
		r := rolloutapi.Rollout{Namespace: fmt.Sprintf("team-%d", i%10), Name: fmt.Sprintf("service-%04d", i)}
		r.Status.Phase = v1alpha1.PhaseHealthy
		rs = append(rs, r)
	}
	srv := httptest.NewServer(rolloutapi.NewHandler(listBackend{rs: rs}, rolloutapi.HandlerOptions{InsecureNoAuth: true}))
	defer srv.Close()
	args := []string{"__complete", "promote", "--server", srv.URL, "-n", "team-3", ""}
	var suggestions int
	for b.Loop() {
		var out strings.Builder
		if code := runAs(context.Background(), "sluice", args, &out, io.Discard); code != exitOK {
			b.Fatalf("exit %d", code)
		}
		suggestions = strings.Count(out.String(), "\n") - 1
	}
	if suggestions != 100 {
		b.Fatalf("%d suggestions, want 100", suggestions)
	}
	b.ReportMetric(float64(suggestions), "suggestions")
}
