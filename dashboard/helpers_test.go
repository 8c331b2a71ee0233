package dashboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

var tNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// memBackend is an in-memory Backend and Watcher: the dashboard is what is
// under test.
type memBackend struct {
	mu       sync.Mutex
	rollouts map[string]rolloutapi.Rollout
	history  map[string][]rolloutapi.Event
	commands []rolloutapi.CommandRequest
	changed  chan struct{}
}

func newMemBackend(rs ...rolloutapi.Rollout) *memBackend {
	b := &memBackend{rollouts: map[string]rolloutapi.Rollout{}, history: map[string][]rolloutapi.Event{}, changed: make(chan struct{})}
	for _, r := range rs {
		b.rollouts[r.Key()] = r
	}
	return b
}

func (m *memBackend) List(context.Context) ([]rolloutapi.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []rolloutapi.Rollout
	for _, r := range m.rollouts {
		r.Detail = nil
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b rolloutapi.Rollout) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}

func (m *memBackend) Get(_ context.Context, ns, name string) (rolloutapi.Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rollouts[ns+"/"+name]
	if !ok {
		return rolloutapi.Rollout{}, fmt.Errorf("%w: rollout %s/%s", rolloutapi.ErrNotFound, ns, name)
	}
	return r, nil
}

func (m *memBackend) History(ctx context.Context, ns, name string, _ int) ([]rolloutapi.Event, error) {
	if _, err := m.Get(ctx, ns, name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.history[ns+"/"+name], nil
}

func (m *memBackend) Command(ctx context.Context, ns, name string, req rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	if _, err := m.Get(ctx, ns, name); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commands = append(m.commands, req)
	return rolloutapi.CommandResponse{ID: "c1", Kind: req.Kind, Result: "skipped step 1 (setWeight 20)"}, nil
}

func (m *memBackend) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// update changes a rollout and signals it.
func (m *memBackend) update(key string, f func(*rolloutapi.Rollout)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rollouts[key]
	f(&r)
	m.rollouts[key] = r
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *memBackend) sent() []rolloutapi.CommandRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.commands)
}

// canaryRollout is shop/web in the middle of a canary: step 2 of 4, 20%
// to v2, its plan ACKed by one proxy.
func canaryRollout() rolloutapi.Rollout {
	step := int32(1)
	p := &plan.Plan{Version: "p2", Service: "web", Namespace: "shop",
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: "v1"}, {Name: plan.Canary, Revision: "v2"}},
		Hosts: []plan.Host{{Name: "web", Port: 8080, Routes: []plan.Route{
			{Name: "jason", Match: []plan.Match{{Headers: []plan.HeaderMatch{{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}}}},
				Destinations: []plan.Destination{{Subset: plan.Canary, Weight: 100}}},
			{Name: "default", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 80}, {Subset: plan.Canary, Weight: 20}}},
		}}}}
	ack := metav1.NewTime(tNow.Add(-10 * time.Second))
	commit := metav1.NewTime(tNow.Add(-time.Hour))
	return rolloutapi.Rollout{
		Namespace: "shop", Name: "web", Strategy: "canary",
		Steps: []string{"setWeight 20", "pause 1m0s", "setWeight 50", "promote to 100%"},
		Plan:  p,
		Status: v1alpha1.RolloutStatus{
			Phase: v1alpha1.PhaseProgressing, Message: "step 2/4 (pause 1m0s): 50s left",
			StableRevision: "v1", CanaryRevision: "v2", CurrentStepIndex: &step, StepCount: 3, StepDisplay: "2/4",
			StepStartedAt: &ack, StepAcknowledgedAt: &v1alpha1.Timestamp{Time: ack.Time},
			Traffic: v1alpha1.TrafficStatus{PlanVersion: "p2", AcknowledgedVersion: "p2", StableWeight: 80, CanaryWeight: 20},
			Git:     &v1alpha1.GitProvenance{Repository: "https://github.com/acme/deploy.git", Commit: "0123456789abcdef0123456789abcdef01234567", Path: "shop/web.yaml", CommitTime: &commit},
		},
		Commands: []rolloutapi.CommandOption{
			{Kind: v1alpha1.CommandPromote, Allowed: true, Result: "skipped step 2 (pause 1m0s)"},
			{Kind: v1alpha1.CommandPromoteFull, Allowed: true, Result: "promoting to 100%"},
			{Kind: v1alpha1.CommandAbort, Allowed: true, Result: "aborted: 100% to stable"},
			{Kind: v1alpha1.CommandRetry, Result: "refused: the rollout is not aborted"},
			{Kind: v1alpha1.CommandPause, Allowed: true, Result: "paused"},
			{Kind: v1alpha1.CommandResume, Result: "refused: not paused (use promote to continue past a pause step)"},
		},
		Detail: &rolloutapi.Detail{
			DataPlane: &rolloutapi.DataPlaneDetail{PlanVersion: "p2", Subscribed: 1, Acked: 1, AckedProxies: []rolloutapi.Proxy{{Node: "web-client-1", Stream: 1}}},
			Commit:    &rolloutapi.Commit{SHA: "0123456789abcdef0123456789abcdef01234567", Author: "Dev <dev@example.com>", Message: "web: v2\n\nNew checkout flow."},
		},
	}
}

const (
	aliceSecret = "alice-secret-token"
	bobSecret   = "bob-secret-token"
)

func testTokens(t *testing.T) []rolloutapi.Token {
	t.Helper()
	var out []rolloutapi.Token
	for _, x := range []struct {
		name   string
		role   rolloutapi.Role
		secret string
	}{{"alice", rolloutapi.RoleOperate, aliceSecret}, {"bob", rolloutapi.RoleRead, bobSecret}} {
		tok, err := rolloutapi.ParseToken("test", x.name, x.role, rolloutapi.HashToken(x.secret))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok)
	}
	return out
}

// serve mounts a dashboard at /dashboard of a test server.
func serve(t *testing.T, b rolloutapi.Backend, o Options) *httptest.Server {
	t.Helper()
	if o.Tokens == nil {
		o.Tokens = testTokens(t)
	}
	if o.Now == nil {
		o.Now = func() time.Time { return tNow }
	}
	d, err := New(b, o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Mount(mux, "/dashboard", d)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// viewer is a browser-like client: a cookie jar, no redirects followed
// unless asked.
type viewer struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newViewer(t *testing.T, srv *httptest.Server) *viewer {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: srv.Client().Transport, Jar: jar}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &viewer{t: t, base: srv.URL + "/dashboard/", c: c}
}

// login logs in with secret and fails the test if that does not work.
func (v *viewer) login(secret string) {
	v.t.Helper()
	resp := v.post("login", url.Values{"token": {secret}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		v.t.Fatalf("login: %d %s", resp.StatusCode, body(v.t, resp))
	}
}

func (v *viewer) get(path string) (*http.Response, string) {
	v.t.Helper()
	resp, err := v.c.Get(v.base + path)
	if err != nil {
		v.t.Fatal(err)
	}
	return resp, body(v.t, resp)
}

func (v *viewer) post(path string, form url.Values, hdr http.Header) *http.Response {
	v.t.Helper()
	req, err := http.NewRequest(http.MethodPost, v.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	return resp
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the viewer's session, read from a page.
func (v *viewer) csrf() string {
	v.t.Helper()
	_, page := v.get("")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		v.t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// httptestTLS serves h over TLS at the root.
func httptestTLS(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}
