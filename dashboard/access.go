package dashboard

import (
	"context"
	"net/http"

	"github.com/sluicehq/sluice/rolloutapi"
)

// Viewer is one person using the dashboard, as an Access knows them: who
// they are, the API as they may use it, and which Rollouts they may steer.
// `sluice run`'s named tokens make one kind (a role for everything);
// controller mode's Kubernetes identities another (RBAC per namespace and
// Rollout, kube/clusterapi.Access).
type Viewer interface {
	// Identity names the viewer: commands are recorded under its Name.
	// Its Role, when set, is shown beside the name.
	Identity() rolloutapi.Identity
	// Backend is the API as this viewer may use it: List shows only the
	// Rollouts they may list, Get, History and Command refuse
	// (rolloutapi.ErrForbidden) what they may not do. A Backend that is
	// also a rolloutapi.Watcher keeps their pages live at once.
	Backend() rolloutapi.Backend
	// MayCommand reports whether the viewer may run commands on the
	// Rollout namespace/name and, when not, why, in words for the page.
	// Which commands the Rollout's phase allows is the engine's to say
	// (rolloutapi.Preview); this is only whether the viewer may ask.
	MayCommand(ctx context.Context, namespace, name string) (bool, string)
	// Check fails once the viewer's credentials no longer hold (a token
	// that expired or was revoked): their session ends, and the next page
	// asks them to log in again.
	Check(ctx context.Context) error
}

// Access says who viewers are.
type Access interface {
	// Login checks what a viewer typed into the login form. A Refused
	// error is shown on the form; any other says the check could not be
	// made (the API server is unreachable) and is shown as such.
	Login(ctx context.Context, secret string) (Viewer, error)
	// Request identifies a request by what it carries besides a session:
	// an authenticating proxy's word, where one is trusted. (nil, nil)
	// means the request says nothing of who sent it, and the viewer logs
	// in; an error refuses the request (identity headers from a source
	// that is not the trusted proxy: the dashboard fails closed).
	Request(r *http.Request) (Viewer, error)
}

// Refused is a login an Access does not accept; its text is shown on the
// login form.
type Refused string

func (e Refused) Error() string { return string(e) }

// tokenAccess is `sluice run`'s access: the API's named tokens, each with
// a role for every Rollout, and one Backend for everyone.
type tokenAccess struct {
	b      rolloutapi.Backend
	tokens []rolloutapi.Token
}

func (a tokenAccess) Login(_ context.Context, secret string) (Viewer, error) {
	id, ok := rolloutapi.Authenticate(a.tokens, secret)
	if !ok {
		if len(a.tokens) == 0 {
			return nil, Refused("This server has no tokens configured, so no one can log in.")
		}
		return nil, Refused("That token is not one this server knows.")
	}
	return TokenViewer(a.b, id), nil
}

func (tokenAccess) Request(*http.Request) (Viewer, error) { return nil, nil }

// TokenViewer is a viewer with a role for every Rollout of b: `sluice
// run`'s tokens, or a local dashboard's one user.
func TokenViewer(b rolloutapi.Backend, id rolloutapi.Identity) Viewer {
	return tokenViewer{b: b, id: id}
}

type tokenViewer struct {
	b  rolloutapi.Backend
	id rolloutapi.Identity
}

func (v tokenViewer) Identity() rolloutapi.Identity { return v.id }
func (v tokenViewer) Backend() rolloutapi.Backend   { return v.b }
func (tokenViewer) Check(context.Context) error     { return nil }

func (v tokenViewer) MayCommand(context.Context, string, string) (bool, string) {
	if v.id.May(rolloutapi.RoleOperate) {
		return true, ""
	}
	return false, "You may look but not act: " + v.id.Name + " has the " + string(v.id.Role) + " role; commands need " + string(rolloutapi.RoleOperate) + "."
}
