package rolloutapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// memBackend is an in-memory Backend: the HTTP layer is what is under test.
type memBackend struct {
	mu       sync.Mutex
	rollouts map[string]Rollout
	commands []CommandRequest
}

func (m *memBackend) List(context.Context) ([]Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Rollout
	for _, r := range m.rollouts {
		out = append(out, r)
	}
	return out, nil
}

func (m *memBackend) Get(_ context.Context, ns, name string) (Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rollouts[ns+"/"+name]
	if !ok {
		return Rollout{}, fmt.Errorf("%w: rollout %s/%s", ErrNotFound, ns, name)
	}
	return r, nil
}

func (m *memBackend) History(ctx context.Context, ns, name string, limit int) ([]Event, error) {
	if _, err := m.Get(ctx, ns, name); err != nil {
		return nil, err
	}
	evs := []Event{{Type: "Normal", Reason: "StepAdvanced", Message: "step 1/3: setWeight 10"}, {Type: "Normal", Reason: "StepAdvanced", Message: "step 2/3"}}
	if limit < len(evs) {
		evs = evs[len(evs)-limit:]
	}
	return evs, nil
}

func (m *memBackend) Command(ctx context.Context, ns, name string, req CommandRequest) (CommandResponse, error) {
	if _, err := m.Get(ctx, ns, name); err != nil {
		return CommandResponse{}, err
	}
	m.mu.Lock()
	m.commands = append(m.commands, req)
	m.mu.Unlock()
	if req.Kind == v1alpha1.CommandRetry {
		return CommandResponse{ID: "1", Kind: req.Kind, Result: "refused: the rollout is not aborted", Refused: true}, nil
	}
	return CommandResponse{ID: "1", Kind: req.Kind, Result: "ok"}, nil
}

func serve(t *testing.T, token string) (*memBackend, *httptest.Server) {
	t.Helper()
	b := &memBackend{rollouts: map[string]Rollout{
		"default/reviews": {Namespace: "default", Name: "reviews", Strategy: "canary", Steps: []string{"setWeight 10", "promote to 100%"},
			Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, StableRevision: "v1", CanaryRevision: "v2"}},
	}}
	var tokens []Token
	if token != "" {
		tokens = []Token{testToken(t, "alice", RoleOperate, token), testToken(t, "dashboard", RoleRead, "read-only")}
	}
	srv := httptest.NewServer(NewHandler(b, HandlerOptions{Tokens: tokens, Ready: func() error { return errors.New("serving the stored plans first") }}))
	t.Cleanup(srv.Close)
	return b, srv
}

func TestClientRoundTrip(t *testing.T) {
	t.Parallel()
	b, srv := serve(t, "s3cret")
	ctx := context.Background()
	c := &Client{BaseURL: srv.URL, Token: "s3cret"}

	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0].Key() != "default/reviews" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	ro, err := c.Get(ctx, "default", "reviews")
	if err != nil || ro.Status.CanaryRevision != "v2" || len(ro.Steps) != 2 {
		t.Fatalf("Get = %+v, %v", ro, err)
	}
	if _, err := c.Get(ctx, "default", "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "default/nope") {
		t.Fatalf("Get(missing) error = %v, want ErrNotFound naming the rollout", err)
	}
	evs, err := c.History(ctx, "default", "reviews", 1)
	if err != nil || len(evs) != 1 || evs[0].Message != "step 2/3" {
		t.Fatalf("History = %+v, %v", evs, err)
	}
	resp, err := c.Command(ctx, "default", "reviews", CommandRequest{Kind: v1alpha1.CommandPromote, By: "alice"})
	if err != nil || resp.Refused || resp.Result != "ok" {
		t.Fatalf("Command = %+v, %v", resp, err)
	}
	resp, err = c.Command(ctx, "default", "reviews", CommandRequest{Kind: v1alpha1.CommandRetry})
	if err != nil || !resp.Refused || !strings.Contains(resp.Result, "not aborted") {
		t.Fatalf("refused Command = %+v, %v", resp, err)
	}
	for i, c := range b.commands {
		if c.By != "alice" {
			t.Fatalf("command %d recorded as by %q, want alice, the token's name (not the body's)", i, c.By)
		}
	}
}

func TestCommandAuthAndValidation(t *testing.T) {
	t.Parallel()
	_, srv := serve(t, "s3cret")
	cases := []struct {
		name  string
		token string
		kind  v1alpha1.CommandKind
		want  error
	}{
		{"no token", "", v1alpha1.CommandAbort, ErrUnauthorized},
		{"wrong token", "guess", v1alpha1.CommandAbort, ErrUnauthorized},
		{"read-only token", "read-only", v1alpha1.CommandAbort, ErrForbidden},
		{"unknown command", "s3cret", "Nuke", ErrBadRequest},
		{"good", "s3cret", v1alpha1.CommandAbort, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &Client{BaseURL: srv.URL, Token: tc.token}
			_, err := c.Command(context.Background(), "default", "reviews", CommandRequest{Kind: tc.kind})
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("Command error = %v, want %v", err, tc.want)
			}
		})
	}
	// Reads need a token too, of any role.
	if _, err := (&Client{BaseURL: srv.URL}).List(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("List without token: %v, want ErrUnauthorized", err)
	}
	if _, err := (&Client{BaseURL: srv.URL, Token: "read-only"}).List(context.Background()); err != nil {
		t.Fatalf("List with a read token: %v", err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	_, srv := serve(t, "s3cret")
	// The webhook has a listener of its own: no route here.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/webhook": 404, "/metrics": 404, "/api/v1/rollouts/default/reviews/history?limit=0": 400} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	if _, err := (&Client{BaseURL: "http://127.0.0.1:1"}).List(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unreachable server error = %v, want ErrUnavailable", err)
	}
}

func testToken(t *testing.T, name string, role Role, secret string) Token {
	t.Helper()
	tok, err := ParseToken("test", name, role, HashToken(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The API fails closed: with no token configured every API request is
// refused; --insecure-no-auth lets everyone in as an operator named after
// their address. Health answers either way; metrics need a token.
func TestFailsClosed(t *testing.T) {
	t.Parallel()
	b := &memBackend{rollouts: map[string]Rollout{"default/reviews": {Namespace: "default", Name: "reviews"}}}
	closed := httptest.NewServer(NewHandler(b, HandlerOptions{}))
	t.Cleanup(closed.Close)
	open := httptest.NewServer(NewHandler(b, HandlerOptions{InsecureNoAuth: true}))
	t.Cleanup(open.Close)
	ctx := context.Background()
	for _, tok := range []string{"", "anything", "Bearer"} {
		c := &Client{BaseURL: closed.URL, Token: tok}
		if _, err := c.List(ctx); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("no tokens configured, token %q: List = %v, want ErrUnauthorized", tok, err)
		}
		if _, err := c.Command(ctx, "default", "reviews", CommandRequest{Kind: v1alpha1.CommandAbort}); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("no tokens configured, token %q: Command = %v, want ErrUnauthorized", tok, err)
		}
	}
	if len(b.commands) != 0 {
		t.Fatalf("commands reached the backend: %+v", b.commands)
	}
	resp, err := http.Get(closed.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	if _, err := (&Client{BaseURL: open.URL}).Command(ctx, "default", "reviews", CommandRequest{Kind: v1alpha1.CommandAbort, By: "alice (forged)"}); err != nil {
		t.Fatal(err)
	}
	if got := b.commands[0].By; got != "anonymous@127.0.0.1" {
		t.Errorf("insecure command by %q, want anonymous@127.0.0.1 whatever the body says", got)
	}

	ops := httptest.NewServer(NewOpsHandler(OpsOptions{Tokens: []Token{testToken(t, "prometheus", RoleRead, "scrape")},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("up 1\n")) })}))
	t.Cleanup(ops.Close)
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "wrong", http.StatusUnauthorized},
		{"/metrics", "scrape", http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/api/v1/rollouts", "scrape", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(http.MethodGet, ops.URL+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("ops %s with token %q: %d, want %d", tc.path, tc.token, resp.StatusCode, tc.want)
		}
	}
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	sum := HashToken("x")
	cases := []struct {
		name, tname string
		role        Role
		sum         string
		want        string // in the error; "" for none
	}{
		{"good", "alice", RoleOperate, sum, ""},
		{"bad name", "al ice", RoleRead, sum, "k.name"},
		{"bad role", "alice", "admin", sum, "k.role"},
		{"short hash", "alice", RoleRead, sum[:10], "k.sha256"},
		{"not hex", "alice", RoleRead, strings.Repeat("z", 64), "k.sha256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseToken("k", tc.tname, tc.role, tc.sum)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("ParseToken = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	secret, sum2, err := NewToken()
	if err != nil || HashToken(secret) != sum2 || len(secret) < 64 {
		t.Fatalf("NewToken = %q %q %v", secret, sum2, err)
	}
}
