package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// engineBackend runs the real engine on one Rollout, acknowledging every
// plan at once: the CLI talks to it over real HTTP.
type engineBackend struct {
	mu     sync.Mutex
	ro     *v1alpha1.Rollout
	now    time.Time
	events []rolloutapi.Event
	ids    int
}

func newEngineBackend(t *testing.T) *engineBackend {
	t.Helper()
	b := &engineBackend{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	b.ro = &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "default"},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080},
			Backend: &v1alpha1.Backend{Version: "v1", Endpoints: []string{"127.0.0.1:9001"}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr(int32(20))}, {Pause: &v1alpha1.PauseStep{}}, {SetWeight: ptr(int32(60))},
			}}},
		},
	}
	steps := []func(){
		func() {},
		func() { b.ro.Spec.Backend.Version = "v2" },
	}
	for _, change := range steps {
		change()
		if err := b.step(engine.Observations{}); err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledge until the rollout waits at the indefinite pause.
	for range 3 {
		if err := b.step(engine.Observations{DataPlane: engine.DataPlane{Version: b.ro.Status.Traffic.PlanVersion, State: engine.AckAcknowledged}}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func (b *engineBackend) step(obs engine.Observations) error {
	out, err := engine.Step(engine.Input{Rollout: b.ro.DeepCopy(), Observations: obs, Now: b.now})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	b.ro.Status = out.Status
	for _, e := range out.Events {
		b.events = append(b.events, rolloutapi.Event{Time: b.now, Type: string(e.Type), Reason: e.Reason, Message: e.Message})
	}
	b.now = b.now.Add(time.Second)
	return nil
}

func (b *engineBackend) view() rolloutapi.Rollout {
	steps, _ := engine.StepLabels(b.ro.Spec.Strategy)
	return rolloutapi.Rollout{Namespace: b.ro.Namespace, Name: b.ro.Name, Strategy: "canary", Steps: steps, Status: b.ro.Status}
}

func (b *engineBackend) List(context.Context) ([]rolloutapi.Rollout, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return []rolloutapi.Rollout{b.view()}, nil
}

func (b *engineBackend) Get(_ context.Context, ns, name string) (rolloutapi.Rollout, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ns != b.ro.Namespace || name != b.ro.Name {
		return rolloutapi.Rollout{}, fmt.Errorf("%w: rollout %s/%s", rolloutapi.ErrNotFound, ns, name)
	}
	return b.view(), nil
}

func (b *engineBackend) History(ctx context.Context, ns, name string, limit int) ([]rolloutapi.Event, error) {
	if _, err := b.Get(ctx, ns, name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.events[max(0, len(b.events)-limit):], nil
}

func (b *engineBackend) Command(ctx context.Context, ns, name string, req rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	if _, err := b.Get(ctx, ns, name); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ids++
	id := strconv.Itoa(b.ids)
	if err := b.step(engine.Observations{Commands: []engine.Command{{ID: id, Kind: req.Kind, By: req.By}}}); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	lc := b.ro.Status.LastCommand
	return rolloutapi.CommandResponse{ID: id, Kind: req.Kind, Result: lc.Result, Refused: strings.HasPrefix(lc.Result, "refused")}, nil
}

// testTokens are alice's operate token "tok" and viewer's read token
// "look".
func testTokens(t *testing.T) []rolloutapi.Token {
	t.Helper()
	var tokens []rolloutapi.Token
	for _, tk := range []struct {
		name   string
		role   rolloutapi.Role
		secret string
	}{{"alice", rolloutapi.RoleOperate, "tok"}, {"viewer", rolloutapi.RoleRead, "look"}} {
		tok, err := rolloutapi.ParseToken("test", tk.name, tk.role, rolloutapi.HashToken(tk.secret))
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	return tokens
}

func TestVerbsAgainstServer(t *testing.T) {
	t.Parallel()
	b := newEngineBackend(t)
	srv := httptest.NewServer(rolloutapi.NewHandler(b, rolloutapi.HandlerOptions{Tokens: testTokens(t)}))
	defer srv.Close()
	s := "--server=" + srv.URL
	r := "--token=look"

	// Sequential: each case changes the rollout the next one sees.
	cases := []struct {
		args []string
		code int
		want []string // substrings of stdout+stderr
	}{
		{[]string{"status", s}, 4, []string{"unauthorized"}},
		{[]string{"status", s, r}, 0, []string{"NAME", "reviews", "Paused", "2/4", "20", "v1", "v2"}},
		{[]string{"status", s, r, "reviews", "--events=3"}, 0, []string{"Steps  [#####---------------] 2/4", "✔  1  setWeight 20", "▶  2  pause until promote", "stable 80% / canary 20%", "acknowledged", "Events"}},
		{[]string{"promote", s, "reviews"}, 4, []string{"unauthorized"}},
		{[]string{"promote", s, r, "reviews"}, 4, []string{`forbidden: token "viewer" has role read`}},
		{[]string{"promote", s, "--token=tok", "reviews"}, 0, []string{"default/reviews: Promote: skipped step 2 (pause until promote)"}},
		{[]string{"abort", s, "--token=tok", "reviews"}, 0, []string{"aborted: 100% to stable"}},
		{[]string{"promote", s, "--token=tok", "reviews", "--full"}, 1, []string{"PromoteFull: refused: the rollout is aborted; use retry"}},
		{[]string{"status", s, r, "reviews", "-w", "--interval=10ms"}, 1, []string{"Degraded", "✘  3  setWeight 60", "aborted"}},
		{[]string{"retry", s, "--token=tok", "reviews", "-o", "json"}, 0, []string{`"kind": "Retry"`, `"refused": false`}},
		{[]string{"history", s, r, "reviews", "--limit=100"}, 0, []string{"CommandAbort", "RetriedByUser", "StepAdvanced"}},
		{[]string{"status", s, r, "nope"}, 3, []string{"not found: rollout default/nope"}},
		{[]string{"pause", s}, 2, []string{"accepts 1 arg"}},
		{[]string{"status", "--server=http://127.0.0.1:1"}, 4, []string{"unavailable"}},
	}
	for _, tc := range cases {
		code, stdout, stderr := runCLI(tc.args...)
		if code != tc.code {
			t.Errorf("sluice %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), code, tc.code, stdout, stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout+stderr, w) {
				t.Errorf("sluice %s: output lacks %q\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), w, stdout, stderr)
			}
		}
	}
	if lc := b.ro.Status.LastCommand; lc == nil || lc.Kind != v1alpha1.CommandRetry || lc.By != "alice" {
		t.Errorf("last command not audited with the token's name: %+v", lc)
	}
}
