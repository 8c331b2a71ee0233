package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
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
	id  string
	who rolloutapi.Identity
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

func (s *sessions) create(who rolloutapi.Identity) *session {
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
	x := &session{id: randomString(), who: who, csrf: randomString(), expires: now.Add(s.ttl)}
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

// session returns the request's session, if it has a live one.
func (d *Dashboard) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	return d.sessions.get(c.Value)
}

// canOperate reports whether the session may run commands here.
func (d *Dashboard) canOperate(s *session) bool {
	return !d.o.ReadOnly && s.who.May(rolloutapi.RoleOperate)
}

// whyNot says why a session may not run commands.
func (d *Dashboard) whyNot(s *session) string {
	if d.o.ReadOnly {
		return "This dashboard is read-only: it runs no commands."
	}
	return "You may look but not act: " + s.who.Name + " has the " + string(s.who.Role) + " role; commands need " + string(rolloutapi.RoleOperate) + "."
}

// page serves a page to a logged-in viewer; others are sent to log in,
// and come back after.
func (d *Dashboard) page(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := d.session(r)
		if !ok {
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
// role need (RoleAny: none).
func (d *Dashboard) action(need rolloutapi.Role, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		s, ok := d.session(r)
		if !ok {
			d.errorPage(w, r, nil, http.StatusForbidden, "Your session has ended: log in again.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
			d.errorPage(w, r, &s, http.StatusForbidden, "This form is stale or was not sent by the dashboard (CSRF token missing or wrong): reload the page and try again.")
			return
		}
		if need == rolloutapi.RoleOperate && !d.canOperate(&s) {
			d.errorPage(w, r, &s, http.StatusForbidden, d.whyNot(&s))
			return
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
}

func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !nextPath.MatchString(next) {
		next = ""
	}
	if d.o.InsecureNoAuth {
		d.startSession(w, r, rolloutapi.Anonymous(r), next)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	d.render(w, http.StatusOK, "login", loginPage{base: d.base(r, nil, "Log in"), Next: next})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := r.PostFormValue("next")
	if !nextPath.MatchString(next) {
		next = ""
	}
	who, ok := rolloutapi.Authenticate(d.o.Tokens, r.PostFormValue("token"))
	if d.o.InsecureNoAuth {
		who, ok = rolloutapi.Anonymous(r), true
	}
	if !ok {
		msg := "That token is not one this server knows."
		if len(d.o.Tokens) == 0 {
			msg = "This server has no tokens configured, so no one can log in."
		}
		d.render(w, http.StatusUnauthorized, "login", loginPage{base: d.base(r, nil, "Log in"), Next: next, Error: msg})
		return
	}
	d.startSession(w, r, who, next)
}

// startSession logs who in and sends them to next. The cookie has no Path:
// the browser scopes it to the folder of the login URL as it sees it,
// which is the dashboard's root whatever prefix a proxy adds.
func (d *Dashboard) startSession(w http.ResponseWriter, r *http.Request, who rolloutapi.Identity, next string) {
	s := d.sessions.create(who)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, MaxAge: int(d.o.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || d.o.SecureCookie,
	})
	to := root(r) + next
	redirect(w, to, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, s *session) {
	d.sessions.drop(s.id)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || d.o.SecureCookie})
	redirect(w, root(r)+"login", http.StatusSeeOther)
}
