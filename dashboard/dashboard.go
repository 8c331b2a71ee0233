// Package dashboard is Sluice's web dashboard: a table of every Rollout and
// a page per Rollout (steps, traffic, data plane, analysis, Git, events),
// kept live by server-sent events, with the manual commands for those who
// may run them.
//
// It is server-rendered HTML (html/template, so every text is escaped),
// a little plain JavaScript for the live updates and clocks, and SVG
// charts, all embedded in the binary; no script runs inline, and the
// Content-Security-Policy says so. It reads and commands through a
// rolloutapi.Backend, the API the CLI uses, so it shows what `sluice
// status` shows and offers a command only where the engine's own rules
// allow it (rolloutapi.Preview), with the engine's words.
//
// Every URL it writes is relative, so it works mounted under any path and
// behind a reverse proxy that adds or strips a prefix. Who a viewer is
// and what they may do is an Access's to say: `sluice run`'s named tokens
// (read or operate), or in a cluster the viewer's Kubernetes identity and
// RBAC (kube/clusterapi). People log in, or an authenticating proxy in
// front vouches for them, and get a session cookie (HttpOnly,
// SameSite=Strict, Secure over TLS); every action carries the session's
// CSRF token and must come from the dashboard's own origin.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// Options configure a Dashboard.
type Options struct {
	// Access says who viewers are and what they may do. Nil: Tokens.
	Access Access
	// Tokens may log in when Access is nil: read tokens see everything,
	// operate tokens may also run commands. With none, no one can log in
	// unless InsecureNoAuth is set.
	Tokens []rolloutapi.Token
	// InsecureNoAuth lets everyone in, without a login, as an operator
	// named after their address (rolloutapi.Anonymous), when Access is
	// nil.
	InsecureNoAuth bool
	// LoginHelp is the login form's text; default, the words for
	// `sluice run`'s tokens.
	LoginHelp string
	// LinkLogin lets GET login?key=SECRET log in as the form does, so
	// that a link printed in a terminal opens a session. Only for a
	// secret made for that link alone (`sluice dashboard`'s local key),
	// never for credentials that count elsewhere: a URL ends up in
	// histories and logs.
	LinkLogin bool
	// ReadOnly offers no command to anyone and refuses every one.
	ReadOnly bool
	// SecureCookie marks the session cookie Secure even on requests that
	// did not come over TLS: for a TLS-terminating proxy in front.
	SecureCookie bool
	// SessionTTL is how long a login lasts; default 12h.
	SessionTTL time.Duration
	// CommandTimeout bounds the wait for the engine's answer; default 30s.
	CommandTimeout time.Duration
	// Refresh is how often a live page is rendered again without a
	// change signal: for backends that give none (rolloutapi.Watcher),
	// and for what changes without a step (who is connected). Default 1s.
	Refresh time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Dashboard serves the dashboard. Mount it with Mount, or under a path of
// its own with http.StripPrefix.
type Dashboard struct {
	o        Options
	access   Access
	sessions *sessions
	pages    *pages
	handler  http.Handler
}

// New serves the dashboard from b, to the viewers Options.Access admits;
// without one, to the holders of Options.Tokens, each reading and
// commanding b. b may be nil with an Access: each viewer has a Backend.
func New(b rolloutapi.Backend, o Options) (*Dashboard, error) {
	if o.SessionTTL == 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh == 0 {
		o.Refresh = time.Second
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	access := o.Access
	if access == nil {
		access = tokenAccess{b: b, tokens: o.Tokens}
	} else {
		o.InsecureNoAuth = false
	}
	d := &Dashboard{o: o, access: access, sessions: newSessions(o.SessionTTL, o.Now), pages: p}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.page(d.table))
	mux.HandleFunc("GET /events", d.stream(d.tableFragment))
	mux.HandleFunc("GET /login", d.loginForm)
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.action(RoleAny, d.logout))
	mux.HandleFunc("GET /rollouts/{namespace}/{name}", d.page(d.rollout))
	mux.HandleFunc("GET /rollouts/{namespace}/{name}/events", d.stream(d.rolloutFragment))
	mux.HandleFunc("GET /rollouts/{namespace}/{name}/confirm/{kind}", d.page(d.confirm))
	mux.HandleFunc("POST /rollouts/{namespace}/{name}/commands/{kind}", d.action(rolloutapi.RoleOperate, d.command))
	mux.HandleFunc("GET /assets/{file}", p.serveAsset)
	mux.HandleFunc("/", d.notFound)
	// Browsers say where a request comes from; a cross-origin POST is
	// refused before any handler runs (the CSRF token is the second
	// line).
	d.handler = http.NewCrossOriginProtection().Handler(mux)
	return d, nil
}

// RoleAny is what an action needs that any logged-in viewer may do (log
// out).
const RoleAny rolloutapi.Role = ""

// contentSecurityPolicy forbids inline script and style, and anything from
// elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves a request whose path is relative to where the dashboard
// is mounted.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	d.handler.ServeHTTP(w, r)
}

// Mount serves h under path on mux (e.g. "/dashboard"; "" or "/" for the
// root), and sends the path without its trailing slash there.
func Mount(mux *http.ServeMux, path string, h http.Handler) {
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		mux.Handle("/", h)
		return
	}
	mux.Handle(path+"/", http.StripPrefix(path, h))
	last := path[strings.LastIndexByte(path, '/')+1:]
	mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { redirect(w, last+"/", http.StatusMovedPermanently) })
}

// root is the relative way from a request's page back to the dashboard's
// root: "./" for the table, "../../" for a rollout's page.
func root(r *http.Request) string {
	n := strings.Count(r.URL.EscapedPath(), "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}

// rolloutPath is a rollout's page, relative to the root.
func rolloutPath(namespace, name string) string {
	return "rollouts/" + pathEscape(namespace) + "/" + pathEscape(name)
}

func (d *Dashboard) notFound(w http.ResponseWriter, r *http.Request) {
	d.errorPage(w, r, nil, http.StatusNotFound, "No such page.")
}

// backendError answers an error of the backend.
func (d *Dashboard) backendError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, rolloutapi.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, rolloutapi.ErrForbidden), errors.Is(err, rolloutapi.ErrUnauthorized):
		status = http.StatusForbidden
	case errors.Is(err, rolloutapi.ErrBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, rolloutapi.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	d.errorPage(w, r, s, status, err.Error())
}

// command runs a command as the session's viewer and shows the rollout's
// page with the engine's answer, worded as the CLI words it.
func (d *Dashboard) command(w http.ResponseWriter, r *http.Request, s *session) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	kind := v1alpha1.CommandKind(r.PathValue("kind"))
	if err := rolloutapi.ValidCommand(kind); err != nil {
		d.backendError(w, r, s, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.o.CommandTimeout)
	defer cancel()
	resp, err := s.viewer.Backend().Command(ctx, ns, name, rolloutapi.CommandRequest{Kind: kind, By: s.viewer.Identity().Name})
	f := flash{Text: rolloutapi.CommandLine(ns, name, resp), Refused: resp.Refused}
	if err != nil {
		f = flash{Text: fmt.Sprintf("%s/%s: %s: %v", ns, name, kind, err), Refused: true}
	}
	d.sessions.setFlash(s.id, f)
	redirect(w, root(r)+rolloutPath(ns, name), http.StatusSeeOther)
}

// pathRE is a mount path of plain segments.
var pathRE = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+/?$`)

// CheckPath refuses a path the dashboard cannot be mounted at: not plain
// segments, the root, or one of reserved (the paths of what shares its
// listener) or below one. key names the setting in the error.
func CheckPath(key, path string, reserved ...string) error {
	p := strings.TrimSuffix(path, "/")
	if !pathRE.MatchString(path) || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") {
		return fmt.Errorf("%s %q: want a path such as /dashboard (segments of letters, digits, '-', '_', '.', '~'), or off", key, path)
	}
	for _, taken := range reserved {
		if p == taken || strings.HasPrefix(p, taken+"/") {
			return fmt.Errorf("%s %q: %s is taken on that listener", key, path, taken)
		}
	}
	return nil
}
