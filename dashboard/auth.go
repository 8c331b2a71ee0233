package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rolloutapi"
)

// cookieName is the session cookie's name.
const cookieName = "sluice_session"

// maxSessions bounds the sessions kept; the oldest give way.
const maxSessions = 10000

// session is one login.
type session struct {
	id     string
	viewer Viewer
	// csrf must come with every form the session posts.
	csrf    string
	expires time.Time
	// flash is shown once, on the next rollout page.
	flash *flash
}

// flash is the answer to the last command, shown once.
type flash struct {
	Text    string
	Refused bool
}

// sessions are kept in memory: a restart logs everyone out.
type sessions struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[string]*session{}}
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(v Viewer) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= maxSessions {
		var oldest *session
		for id, x := range s.m {
			if now.After(x.expires) {
				delete(s.m, id)
			} else if oldest == nil || x.expires.Before(oldest.expires) {
				oldest = x
			}
		}
		if len(s.m) >= maxSessions && oldest != nil {
			delete(s.m, oldest.id)
		}
	}
	x := &session{id: randomString(), viewer: v, csrf: randomString(), expires: now.Add(s.ttl)}
	s.m[x.id] = x
	return x
}

// get returns a copy of a live session.
func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if s.now().After(x.expires) {
		delete(s.m, id)
		return session{}, false
	}
	return *x, true
}

// setViewer renews who a live session's viewer is (an authenticating
// proxy said so again, perhaps with other groups).
func (s *sessions) setViewer(id string, v Viewer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.m[id]; ok {
		x.viewer = v
	}
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *sessions) setFlash(id string, f flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.m[id]; ok {
		x.flash = &f
	}
}

func (s *sessions) takeFlash(id string) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return nil
	}
	f := x.flash
	x.flash = nil
	return f
}

// errNoSession: the request has no live session; the viewer logs in.
var errNoSession = errors.New("no session")

// session returns the request's live session. Where an authenticating
// proxy vouches for the request (Access.Request), its word is who the
// viewer is: their session is renewed with it, and a session of someone
// else ends (the login form then makes theirs, at the dashboard's root,
// where its cookie covers every page). A session whose viewer's
// credentials no longer hold (Viewer.Check) ends. An error other than
// errNoSession refuses the request.
func (d *Dashboard) session(r *http.Request) (session, error) {
	pv, err := d.access.Request(r)
	if err != nil {
		return session{}, err
	}
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return session{}, errNoSession
	}
	s, ok := d.sessions.get(c.Value)
	switch {
	case !ok:
		return session{}, errNoSession
	case pv != nil && s.viewer.Identity().Name != pv.Identity().Name:
		d.sessions.drop(s.id)
		return session{}, errNoSession
	case pv != nil:
		d.sessions.setViewer(s.id, pv)
		s.viewer = pv
		return s, nil
	}
	if err := s.viewer.Check(r.Context()); err != nil {
		d.sessions.drop(s.id)
		return session{}, errNoSession
	}
	return s, nil
}

// canOperate reports whether the session may run commands on the Rollout
// namespace/name, and when not, why.
func (d *Dashboard) canOperate(ctx context.Context, s *session, namespace, name string) (bool, string) {
	if d.o.ReadOnly {
		return false, "This dashboard is read-only: it runs no commands."
	}
	return s.viewer.MayCommand(ctx, namespace, name)
}

// refuse answers a request the Access refused, or one without a session
// where a page cannot send the viewer to log in.
func (d *Dashboard) refuse(w http.ResponseWriter, r *http.Request, err error) {
	msg := "Your session has ended: log in again."
	if !errors.Is(err, errNoSession) {
		msg = "Refused: " + err.Error()
	}
	d.errorPage(w, r, nil, http.StatusForbidden, msg)
}

// page serves a page to a logged-in viewer; others are sent to log in,
// and come back after.
func (d *Dashboard) page(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := d.session(r)
		if err != nil && !errors.Is(err, errNoSession) {
			d.refuse(w, r, err)
			return
		}
		if err != nil {
			to := root(r) + "login"
			if next := r.URL.Path[1:]; nextPath.MatchString(next) && next != "" {
				to += "?next=" + url.QueryEscape(next)
			}
			redirect(w, to, http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, &s)
	}
}

// action serves a form's POST: a live session, its CSRF token, and the
// role need (RoleAny: none; RoleOperate: the viewer may run commands on
// the Rollout the path names).
func (d *Dashboard) action(need rolloutapi.Role, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		s, err := d.session(r)
		if err != nil {
			d.refuse(w, r, err)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
			d.errorPage(w, r, &s, http.StatusForbidden, "This form is stale or was not sent by the dashboard (CSRF token missing or wrong): reload the page and try again.")
			return
		}
		if need == rolloutapi.RoleOperate {
			if ok, why := d.canOperate(r.Context(), &s, r.PathValue("namespace"), r.PathValue("name")); !ok {
				d.errorPage(w, r, &s, http.StatusForbidden, why)
				return
			}
		}
		h(w, r, &s)
	}
}

// nextPath is where a login may send the viewer back to: a page of the
// dashboard, never elsewhere.
var nextPath = regexp.MustCompile(`^(rollouts/[^/?#\\]+/[^/?#\\]+)?$`)

type loginPage struct {
	base
	Next  string
	Error string
	Help  string
}

// defaultLoginHelp is the login form's text for `sluice run`'s tokens.
const defaultLoginHelp = "Paste an API token of this server: a read token shows the rollouts, an operate token also lets you " +
	"promote, abort, retry, pause and resume them (sluice token NAME makes one)."

func (d *Dashboard) loginPage(r *http.Request, next, msg string) loginPage {
	help := d.o.LoginHelp
	if help == "" {
		help = defaultLoginHelp
	}
	return loginPage{base: d.base(r, nil, "Log in"), Next: next, Error: msg, Help: help}
}

func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !nextPath.MatchString(next) {
		next = ""
	}
	if d.o.InsecureNoAuth {
		d.startSession(w, r, TokenViewer(d.access.(tokenAccess).b, rolloutapi.Anonymous(r)), next)
		return
	}
	// Behind an authenticating proxy the proxy's word is the login.
	pv, err := d.access.Request(r)
	if err != nil {
		d.refuse(w, r, err)
		return
	}
	if pv != nil {
		d.startSession(w, r, pv, next)
		return
	}
	if key := r.URL.Query().Get("key"); d.o.LinkLogin && key != "" {
		d.loginWith(w, r, key, next)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	d.render(w, http.StatusOK, "login", d.loginPage(r, next, ""))
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := r.PostFormValue("next")
	if !nextPath.MatchString(next) {
		next = ""
	}
	if d.o.InsecureNoAuth {
		d.startSession(w, r, TokenViewer(d.access.(tokenAccess).b, rolloutapi.Anonymous(r)), next)
		return
	}
	d.loginWith(w, r, r.PostFormValue("token"), next)
}

// loginWith logs in with secret, or shows the form again saying why not.
func (d *Dashboard) loginWith(w http.ResponseWriter, r *http.Request, secret, next string) {
	w.Header().Set("Cache-Control", "no-store")
	v, err := d.access.Login(r.Context(), secret)
	switch {
	case errors.Is(err, rolloutapi.ErrUnauthorized):
		d.render(w, http.StatusUnauthorized, "login", d.loginPage(r, next, err.Error()))
		return
	case err != nil:
		d.render(w, http.StatusServiceUnavailable, "login", d.loginPage(r, next, "Your login could not be checked: "+err.Error()))
		return
	}
	d.startSession(w, r, v, next)
}

// startSession logs v in and sends them to next.
func (d *Dashboard) startSession(w http.ResponseWriter, r *http.Request, v Viewer, next string) {
	s := d.sessions.create(v)
	d.setCookie(w, r, s.id)
	redirect(w, root(r)+next, http.StatusSeeOther)
}

// setCookie gives the browser its session. The cookie has no Path: the
// browser scopes it to the folder of the login URL as it sees it, which
// is the dashboard's root whatever prefix a proxy adds.
func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, id string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, MaxAge: int(d.o.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || d.o.SecureCookie,
	})
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, s *session) {
	d.sessions.drop(s.id)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || d.o.SecureCookie})
	redirect(w, root(r)+"login", http.StatusSeeOther)
}
