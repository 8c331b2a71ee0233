package rolloutapi

import (
	"context"
	"net/http"
)

// Viewer is one person using the API through a surface that acts for
// them (the web dashboard), as an Access knows them: who they are, the API
// as they may use it, and which Rollouts they may steer.
// `sluice run`'s named tokens make one kind (a role for everything);
// controller mode's Kubernetes identities another (RBAC per namespace and
// Rollout, kube/clusterapi.Access).
type Viewer interface {
	// Identity names the viewer: commands are recorded under its Name.
	// Its Role, when set, is shown beside the name.
	Identity() Identity
	// Backend is the API as this viewer may use it: List shows only the
	// Rollouts they may list, Get, History and Command refuse
	// (ErrForbidden) what they may not do. A Backend that is
	// also a Watcher keeps their pages live at once.
	Backend() Backend
	// MayCommand reports whether the viewer may run commands on the
	// Rollout namespace/name and, when not, why, in words for the page.
	// Which commands the Rollout's phase allows is the engine's to say
	// (Preview); this is only whether the viewer may ask.
	MayCommand(ctx context.Context, namespace, name string) (bool, string)
	// Check fails once the viewer's credentials no longer hold (a token
	// that expired or was revoked): their session ends, and the next page
	// asks them to log in again.
	Check(ctx context.Context) error
}

// Access says who viewers are.
type Access interface {
	// Login checks what a viewer typed into the login form. An
	// ErrUnauthorized (such as a Refused) is a secret it does not accept,
	// and its text is shown on the form; any other error says the check
	// could not be made (the API server is unreachable).
	Login(ctx context.Context, secret string) (Viewer, error)
	// Request identifies a request by what it carries besides a session:
	// an authenticating proxy's word, where one is trusted. (nil, nil)
	// means the request says nothing of who sent it, and the viewer logs
	// in; an error refuses the request (identity headers from a source
	// that is not the trusted proxy: the dashboard fails closed).
	Request(r *http.Request) (Viewer, error)
}

// Refused is a login an Access does not accept; its text is what the
// login form shows. It is an ErrUnauthorized.
type Refused string

func (e Refused) Error() string { return string(e) }

// Is makes a Refused an ErrUnauthorized.
func (e Refused) Is(target error) bool { return target == ErrUnauthorized }
