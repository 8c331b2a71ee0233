package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
