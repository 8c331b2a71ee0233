package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/dashboard"
	"github.com/sluicehq/sluice/rolloutapi"
)

// dashboardFlags configure the web dashboard that `sluice run` serves on
// its API listener.
type dashboardFlags struct {
	path         string
	readOnly     bool
	secureCookie bool
}

func (f *dashboardFlags) addFlags(fl *pflag.FlagSet) {
	fl.StringVar(&f.path, "dashboard-path", "/dashboard", `where the web dashboard is served on the API listener (--http-address); "off" serves none`)
	fl.BoolVar(&f.readOnly, "dashboard-read-only", false, "the dashboard shows everything but offers and runs no command, whatever the token")
	fl.BoolVar(&f.secureCookie, "dashboard-secure-cookie", false, "mark the dashboard's session cookie Secure over plain HTTP too: for a TLS-terminating proxy in front (over http.tls it always is)")
}

// dashboardPath is a path of plain segments.
var dashboardPath = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+/?$`)

// check refuses a path the dashboard cannot have: the root, or one of the
// API's.
func (f *dashboardFlags) check() error {
	if f.path == "off" {
		return nil
	}
	p := strings.TrimSuffix(f.path, "/")
	if !dashboardPath.MatchString(f.path) || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") {
		return fmt.Errorf("--dashboard-path %q: want a path such as /dashboard (segments of letters, digits, '-', '_', '.', '~'), or off", f.path)
	}
	for _, taken := range []string{"/api", "/healthz", "/readyz"} {
		if p == taken || strings.HasPrefix(p, taken+"/") {
			return fmt.Errorf("--dashboard-path %q: %s is the API's", f.path, taken)
		}
	}
	return nil
}

func (f *dashboardFlags) on() bool { return f.path != "off" && f.path != "" }

// serve returns api, with the dashboard beside it when it is on.
func (f *dashboardFlags) serve(api http.Handler, b rolloutapi.Backend, tokens []rolloutapi.Token, insecureNoAuth bool) (http.Handler, error) {
	if !f.on() {
		return api, nil
	}
	d, err := dashboard.New(b, dashboard.Options{Tokens: tokens, InsecureNoAuth: insecureNoAuth, ReadOnly: f.readOnly, SecureCookie: f.secureCookie})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	dashboard.Mount(mux, f.path, d)
	return mux, nil
}

// url is where the dashboard is, for the log.
func (f *dashboardFlags) url(s *httpServer) string {
	if !f.on() {
		return "off"
	}
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + s.addr + strings.TrimSuffix(f.path, "/") + "/"
}
