package api

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
	srv := httptest.NewServer(NewHandler(b, HandlerOptions{Token: token, Ready: func() error { return errors.New("serving the stored plans first") }}))
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
	if got := b.commands[1].By; !strings.HasPrefix(got, "api@127.0.0.1") {
		t.Fatalf("anonymous command recorded as by %q, want the client address", got)
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
	// Reads need no token.
	if _, err := (&Client{BaseURL: srv.URL}).List(context.Background()); err != nil {
		t.Fatalf("List without token: %v", err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	_, srv := serve(t, "")
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/webhook": 405, "/api/v1/rollouts/default/reviews/history?limit=0": 400} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if path == "/webhook" {
			// Not configured: no route at all.
			want = http.StatusNotFound
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	if _, err := (&Client{BaseURL: "http://127.0.0.1:1"}).List(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unreachable server error = %v, want ErrUnavailable", err)
	}
}
