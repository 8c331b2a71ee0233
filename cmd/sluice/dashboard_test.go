package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

func TestDashboardPathFlag(t *testing.T) {
	t.Parallel()
	for path, ok := range map[string]bool{
		"/dashboard": true, "/ops/sluice/": true, "off": true,
		"": false, "/": false, "dashboard": false, "/api": false, "/api/v1/ui": false, "/healthz": false, "/a b": false, "/x/../y": false, "/x/.": false,
	} {
		f := dashboardFlags{path: path}
		if err := f.check(); (err == nil) != ok {
			t.Errorf("--dashboard-path %q: %v, want ok %v", path, err, ok)
		}
	}
}

// TestDashboardBesideTheAPI: the API listener serves both, each its own
// paths, and the dashboard can be turned off.
func TestDashboardBesideTheAPI(t *testing.T) {
	t.Parallel()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api "+r.URL.Path) })
	for _, tc := range []struct {
		path, get, want string
	}{
		{"/dashboard", "/dashboard/login", "Log in to Sluice"},
		{"/dashboard", "/api/v1/rollouts", "api /api/v1/rollouts"},
		{"/ops/ui/", "/ops/ui/login", "Log in to Sluice"},
		{"off", "/dashboard/login", "api /dashboard/login"},
	} {
		f := dashboardFlags{path: tc.path}
		h, err := f.serve(api, nil, []rolloutapi.Token{}, false)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.get, nil))
		if !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("--dashboard-path %s, GET %s: %d %q, want %q", tc.path, tc.get, rec.Code, rec.Body.String(), tc.want)
		}
	}
}

// TestDashboardCommandAgainstServer: `sluice dashboard --server` serves the
// dashboard of a remote server on this machine; its page unlocks with the
// token, and commands go to the server under the token's name, or come
// back refused for a read token.
func TestDashboardCommandAgainstServer(t *testing.T) {
	t.Parallel()
	b := newEngineBackend(t)
	remote := httptest.NewServer(rolloutapi.NewHandler(b, rolloutapi.HandlerOptions{Tokens: testTokens(t)}))
	defer remote.Close()

	for _, tc := range []struct {
		token, flash string
	}{
		{"look", `forbidden: token &#34;viewer&#34; has role read`},
		{"tok", "default/reviews: Promote: skipped step 2 (pause until promote)"},
	} {
		f := dashboardServeFlags{target: target{server: remote.URL, token: tc.token}, refresh: 500 * time.Millisecond}
		h, err := f.handler(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		local := httptest.NewServer(h)
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		if resp, err := c.PostForm(local.URL+"/login", url.Values{"token": {"wrong"}}); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("login with another token: %v %v", resp.Status, err)
		}
		resp, err := c.PostForm(local.URL+"/login", url.Values{"token": {tc.token}})
		if err != nil {
			t.Fatal(err)
		}
		page := readBody(t, resp)
		if !strings.Contains(page, `data-rollout="default/reviews"`) {
			t.Fatalf("table after login:\n%s", page)
		}
		csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
		if csrf == nil {
			t.Fatal("no CSRF token")
		}
		resp, err = c.PostForm(local.URL+"/rollouts/default/reviews/commands/Promote", url.Values{"csrf": {csrf[1]}})
		if err != nil {
			t.Fatal(err)
		}
		if page := readBody(t, resp); !strings.Contains(page, tc.flash) {
			t.Errorf("token %s: after promote, no %q in:\n%s", tc.token, tc.flash, page)
		}
		local.Close()
	}
	if lc := b.ro.Status.LastCommand; lc == nil || lc.Kind != v1alpha1.CommandPromote || lc.By != "alice" {
		t.Errorf("last command %+v: want Promote by alice, the token's name", lc)
	}
	f := dashboardServeFlags{target: target{server: remote.URL}, refresh: time.Millisecond}
	if _, err := f.handler(t.Context()); err == nil {
		t.Error("a refresh of 1ms accepted")
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
