package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// fakeAccess plays an Access with rights per namespace and Rollout, as
// controller mode's RBAC gives them: each person may read some namespaces
// and steer some Rollouts. Login takes "<name>-token"; a request with
// X-Test-User comes from a proxy, trusted unless it also says
// X-Test-Untrusted.
type fakeAccess struct {
	b      *memBackend
	people map[string]rights
	// expired makes every viewer's Check fail.
	expired atomic.Bool
	// down makes Login fail as an unreachable API server would.
	down bool
}

type rights struct {
	read    []string // namespaces
	operate []string // namespace/name
	events  bool
}

func (a *fakeAccess) Login(_ context.Context, secret string) (Viewer, error) {
	if a.down {
		return nil, fmt.Errorf("%w: cannot reach the API server", rolloutapi.ErrUnavailable)
	}
	name, ok := strings.CutSuffix(secret, "-token")
	if _, known := a.people[name]; !ok || !known {
		return nil, Refused("The API server does not know that token.")
	}
	return &fakeViewer{a: a, name: name}, nil
}

func (a *fakeAccess) Request(r *http.Request) (Viewer, error) {
	user := r.Header.Get("X-Test-User")
	switch {
	case user == "":
		return nil, nil
	case r.Header.Get("X-Test-Untrusted") != "":
		return nil, errors.New("identity headers from an untrusted source")
	}
	return &fakeViewer{a: a, name: user}, nil
}

type fakeViewer struct {
	a    *fakeAccess
	name string
}

func (v *fakeViewer) Identity() rolloutapi.Identity { return rolloutapi.Identity{Name: v.name} }
func (v *fakeViewer) Backend() rolloutapi.Backend   { return v }

func (v *fakeViewer) Check(context.Context) error {
	if v.a.expired.Load() {
		return errors.New("token expired")
	}
	return nil
}

func (v *fakeViewer) MayCommand(_ context.Context, ns, name string) (bool, string) {
	for _, k := range v.a.people[v.name].operate {
		if k == ns+"/"+name {
			return true, ""
		}
	}
	return false, v.name + " may not patch rollouts in " + ns
}

func (v *fakeViewer) reads(ns string) bool {
	for _, n := range v.a.people[v.name].read {
		if n == ns {
			return true
		}
	}
	return false
}

func (v *fakeViewer) List(ctx context.Context) ([]rolloutapi.Rollout, error) {
	all, err := v.a.b.List(ctx)
	var out []rolloutapi.Rollout
	for _, r := range all {
		if v.reads(r.Namespace) {
			out = append(out, r)
		}
	}
	return out, err
}

func (v *fakeViewer) Get(ctx context.Context, ns, name string) (rolloutapi.Rollout, error) {
	if !v.reads(ns) {
		return rolloutapi.Rollout{}, fmt.Errorf("%w: %s may not get rollouts in %s", rolloutapi.ErrForbidden, v.name, ns)
	}
	return v.a.b.Get(ctx, ns, name)
}

func (v *fakeViewer) History(ctx context.Context, ns, name string, limit int) ([]rolloutapi.Event, error) {
	if !v.a.people[v.name].events {
		return nil, fmt.Errorf("%w: %s may not list events in %s", rolloutapi.ErrForbidden, v.name, ns)
	}
	return v.a.b.History(ctx, ns, name, limit)
}

func (v *fakeViewer) Command(ctx context.Context, ns, name string, req rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	if ok, why := v.MayCommand(ctx, ns, name); !ok {
		return rolloutapi.CommandResponse{}, fmt.Errorf("%w: %s", rolloutapi.ErrForbidden, why)
	}
	return v.a.b.Command(ctx, ns, name, req)
}

// threeRollouts are shop/web, shop/cart and team-b/api.
func threeRollouts() *memBackend {
	web, cart, api := canaryRollout(), canaryRollout(), canaryRollout()
	cart.Name = "cart"
	api.Namespace, api.Name = "team-b", "api"
	return newMemBackend(web, cart, api)
}

func rowsOf(page string) string {
	var out []string
	for _, m := range regexp.MustCompile(`data-rollout="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, " ")
}

// TestAccessPerRollout: a viewer sees the Rollouts of the namespaces they
// may read, gets actions only on the Rollouts they may steer, and a POST
// on another one is refused (403) and runs nothing.
func TestAccessPerRollout(t *testing.T) {
	t.Parallel()
	b := threeRollouts()
	a := &fakeAccess{b: b, people: map[string]rights{"carol": {read: []string{"shop"}, operate: []string{"shop/web"}}}}
	srv := serve(t, nil, Options{Access: a, LoginHelp: "Paste a Kubernetes token."})
	v := newViewer(t, srv)
	_, page := v.get("login")
	if !strings.Contains(page, `<p id="login-help">Paste a Kubernetes token.</p>`) {
		t.Errorf("login form without the access's help:\n%s", page)
	}
	if resp := v.post("login", url.Values{"token": {"mallory-token"}}, nil); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(body(t, resp), "The API server does not know that token.") {
		t.Fatalf("unknown token: %d", resp.StatusCode)
	}
	v.login("carol-token")
	if _, page := v.get(""); rowsOf(page) != "shop/cart shop/web" || !strings.Contains(page, `<span class="who">carol</span>`) {
		t.Fatalf("table rows %q, want shop's only, under carol's name without a role:\n%s", rowsOf(page), page)
	}
	if _, page := v.get("rollouts/shop/web"); !strings.Contains(page, `id="action-Promote"`) || !strings.Contains(page, `id="events-hidden"`) {
		t.Errorf("shop/web: want actions, and the events hidden:\n%s", page)
	}
	if _, page := v.get("rollouts/shop/cart"); strings.Contains(page, `id="actions"`) || strings.Contains(page, "action-") {
		t.Errorf("shop/cart offers actions to one who may not steer it")
	}
	if resp, page := v.get("rollouts/team-b/api"); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "carol may not get rollouts in team-b") {
		t.Errorf("team-b/api: %d\n%s", resp.StatusCode, page)
	}
	if resp, _ := v.get("rollouts/shop/cart/confirm/Abort"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("confirmation on shop/cart: %d, want 403", resp.StatusCode)
	}
	csrf := v.csrf()
	for _, path := range []string{"rollouts/shop/cart/commands/Abort", "rollouts/team-b/api/commands/Abort"} {
		resp := v.post(path, url.Values{"csrf": {csrf}}, nil)
		if page := body(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "carol may not patch rollouts in") {
			t.Errorf("%s: %d, want 403 saying why\n%s", path, resp.StatusCode, page)
		}
	}
	if got := b.sent(); len(got) != 0 {
		t.Fatalf("refused commands ran: %+v", got)
	}
	if resp := v.post("rollouts/shop/web/commands/Pause", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("allowed command: %d", resp.StatusCode)
	}
	if got := b.sent(); len(got) != 1 || got[0].By != "carol" || got[0].Kind != v1alpha1.CommandPause {
		t.Fatalf("commands sent: %+v, want carol's Pause", got)
	}
}

// TestAccessChecksTheSession: a session whose credentials stopped holding
// ends, and the viewer is asked to log in again; a login that cannot be
// checked says so.
func TestAccessChecksTheSession(t *testing.T) {
	t.Parallel()
	a := &fakeAccess{b: threeRollouts(), people: map[string]rights{"carol": {read: []string{"shop"}}}}
	srv := serve(t, nil, Options{Access: a})
	v := newViewer(t, srv)
	v.login("carol-token")
	if resp, _ := v.get(""); resp.StatusCode != http.StatusOK {
		t.Fatalf("table: %d", resp.StatusCode)
	}
	a.expired.Store(true)
	if resp, _ := v.get(""); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "./login") {
		t.Fatalf("after the token expired: %d to %q, want the login form", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, page := v.get("events"); !strings.Contains(page, "event: login") {
		t.Fatalf("stream after the token expired:\n%s", page)
	}

	down := &fakeAccess{b: threeRollouts(), people: a.people, down: true}
	v = newViewer(t, serve(t, nil, Options{Access: down}))
	resp := v.post("login", url.Values{"token": {"carol-token"}}, nil)
	if page := body(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page, "could not be checked: unavailable: cannot reach the API server") {
		t.Fatalf("login with the API server down: %d\n%s", resp.StatusCode, page)
	}
}

// TestAuthenticatingProxy: a request the proxy vouches for logs in
// without a form; another person behind the same browser gets a session
// of their own; identity headers the Access does not trust are refused.
func TestAuthenticatingProxy(t *testing.T) {
	t.Parallel()
	a := &fakeAccess{b: threeRollouts(), people: map[string]rights{
		"dora": {read: []string{"shop"}, operate: []string{"shop/web"}, events: true},
		"erin": {read: []string{"team-b"}},
	}}
	srv := serve(t, nil, Options{Access: a})
	v := newViewer(t, srv)
	as := func(user string) http.Header { return http.Header{"X-Test-User": {user}} }
	get := func(path string, h http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, v.base+path, nil)
		req.Header = h.Clone()
		resp, err := v.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body(t, resp)
	}
	follow := func(path string, h http.Header) string {
		t.Helper()
		for range 4 {
			resp, page := get(path, h)
			if resp.StatusCode != http.StatusSeeOther {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d\n%s", path, resp.StatusCode, page)
				}
				return page
			}
			u, _ := url.Parse(v.base + path)
			next, _ := u.Parse(resp.Header.Get("Location"))
			path = strings.TrimPrefix(next.String(), v.base)
		}
		t.Fatalf("%s: too many redirects", path)
		return ""
	}
	page := follow("rollouts/shop/web", as("dora"))
	if !strings.Contains(page, `<span class="who">dora</span>`) || !strings.Contains(page, `id="action-Promote"`) {
		t.Fatalf("dora behind the proxy:\n%s", page)
	}
	csrf := csrfRE.FindStringSubmatch(page)[1]
	if page := follow("", as("erin")); rowsOf(page) != "team-b/api" || !strings.Contains(page, `<span class="who">erin</span>`) {
		t.Fatalf("erin behind the proxy in dora's browser: rows %q", rowsOf(page))
	}
	// dora's session ended with erin's arrival: her form is stale.
	resp := v.post("rollouts/shop/web/commands/Pause", url.Values{"csrf": {csrf}}, as("dora"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dora's old form: %d, want 403", resp.StatusCode)
	}
	if resp, page := get("", http.Header{"X-Test-User": {"dora"}, "X-Test-Untrusted": {"1"}}); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(page, "untrusted source") {
		t.Fatalf("headers from an untrusted source: %d\n%s", resp.StatusCode, page)
	}
	if resp, _ := get("login", http.Header{"X-Test-User": {"dora"}, "X-Test-Untrusted": {"1"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login with headers from an untrusted source: %d", resp.StatusCode)
	}
	if got := a.b.sent(); len(got) != 0 {
		t.Fatalf("commands ran: %+v", got)
	}
}

// TestLinkLogin: with LinkLogin a printed link logs in; without it the
// key in a URL counts for nothing.
func TestLinkLogin(t *testing.T) {
	t.Parallel()
	a := &fakeAccess{b: threeRollouts(), people: map[string]rights{"me": {read: []string{"shop"}}}}
	for _, on := range []bool{true, false} {
		v := newViewer(t, serve(t, nil, Options{Access: a, LinkLogin: on}))
		resp, _ := v.get("login?key=me-token&next=rollouts%2Fshop%2Fweb")
		switch {
		case on && (resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./rollouts/shop/web"):
			t.Fatalf("link login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		case !on && resp.StatusCode != http.StatusOK:
			t.Fatalf("link without LinkLogin: %d, want the form", resp.StatusCode)
		}
		resp, _ = v.get("")
		if loggedIn := resp.StatusCode == http.StatusOK; loggedIn != on {
			t.Fatalf("LinkLogin %v: logged in %v", on, loggedIn)
		}
	}
}
