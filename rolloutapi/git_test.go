package rolloutapi

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// NotSynced names what keeps a head commit out of force, escaping the
// text from Git it repeats.
func TestNotSynced(t *testing.T) {
	t.Parallel()
	const head, applied = "2222222222222222222222222222222222222222", "1111111111111111111111111111111111111111"
	rejected := &v1alpha1.GitRejection{Commit: head, ProblemCount: 1,
		Problems: []v1alpha1.GitSourceProblem{{File: "a.yaml", Line: 3, Field: "spec.x", Reason: "bad\x1b[2J"}}}
	for _, tc := range []struct {
		name string
		g    *v1alpha1.GitSyncStatus
		want string
	}{
		{"synced", &v1alpha1.GitSyncStatus{HeadCommit: head, AppliedCommit: head}, ""},
		{"not from Git", nil, "not applied from Git"},
		{"rejected", &v1alpha1.GitSyncStatus{HeadCommit: head, AppliedCommit: applied, Rejected: rejected},
			`head commit 222222222222 was rejected (a.yaml:3: spec.x: bad\x1b[2J); 111111111111 stays in force`},
		{"rejected by a limit, nothing applied", &v1alpha1.GitSyncStatus{HeadCommit: head,
			Rejected: &v1alpha1.GitRejection{Commit: head, Message: "over maxFiles"}},
			"head commit 222222222222 was rejected (over maxFiles); nothing stays in force"},
		{"not fetched yet", &v1alpha1.GitSyncStatus{}, "the source has not been fetched yet"},
		{"fetch failing", &v1alpha1.GitSyncStatus{HeadCommit: head, AppliedCommit: head, Message: "unreachable"},
			"cannot tell whether head commit 222222222222 is the latest: unreachable; 222222222222 in force"},
		{"applying", &v1alpha1.GitSyncStatus{HeadCommit: head, AppliedCommit: applied},
			"head commit 222222222222 is not applied yet; 111111111111 in force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := NotSynced(tc.g); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if (tc.want == "") != tc.g.InSync() {
				t.Errorf("InSync %v disagrees with %q", tc.g.InSync(), tc.want)
			}
		})
	}
}

// watchBackend is a memBackend that signals changes (Watcher) and lists
// one Git source (GitReporter).
type watchBackend struct {
	*memBackend
	mu      sync.Mutex
	changed chan struct{}
}

func (w *watchBackend) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

func (w *watchBackend) signal() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *watchBackend) GitSources(context.Context) ([]GitSource, error) {
	return []GitSource{{Repository: "https://git.example.com/r.git", GitSyncStatus: v1alpha1.GitSyncStatus{HeadCommit: "abc", AppliedCommit: "abc"}}}, nil
}

// The event stream says "changed" once it is up and after every change
// the Backend signals; the Client's Follow turns that into its channel.
// The Git sources come through the Client too. Both need a token.
func TestWatchAndGitSourcesThroughTheClient(t *testing.T) {
	t.Parallel()
	mb, _ := serve(t, "")
	wb := &watchBackend{memBackend: mb, changed: make(chan struct{})}
	srv := httptest.NewServer(NewHandler(wb, HandlerOptions{Tokens: []Token{testToken(t, "dashboard", RoleRead, "read-only")}}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if _, err := (&Client{BaseURL: srv.URL}).Follow(ctx, "", ""); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("follow without a token: %v, want unauthorized", err)
	}
	for _, tok := range []string{"", "wrong"} {
		if _, err := (&Client{BaseURL: srv.URL, Token: tok}).GitSources(ctx); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("git sources with token %q: %v, want ErrUnauthorized", tok, err)
		}
	}
	c := &Client{BaseURL: srv.URL, Token: "read-only"}
	changes, err := c.Follow(ctx, "default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		wb.signal()
		select {
		case _, ok := <-changes:
			if !ok {
				t.Fatalf("change %d: the stream ended", i)
			}
		case <-time.After(30 * time.Second): // a guard against a hang, not a measure
			t.Fatalf("change %d: not signalled", i)
		}
	}
	srcs, err := c.GitSources(ctx)
	if err != nil || len(srcs) != 1 || !srcs[0].InSync() || srcs[0].Repository != "https://git.example.com/r.git" {
		t.Fatalf("git sources %+v, %v: want the one, in sync", srcs, err)
	}
	cancel()
	if _, ok := <-changes; ok {
		// One change may still be buffered; the channel must close.
		if _, ok := <-changes; ok {
			t.Error("the follow did not end with its context")
		}
	}
}
