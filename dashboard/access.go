package dashboard

import (
	"context"
	"crypto/subtle"
	"net/http"

	"github.com/sluicehq/sluice/rolloutapi"
)

// Viewer is one person using the dashboard (rolloutapi.Viewer).
type Viewer = rolloutapi.Viewer

// Access says who viewers are (rolloutapi.Access).
type Access = rolloutapi.Access

// Refused is a login an Access does not accept (rolloutapi.Refused).
type Refused = rolloutapi.Refused

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

// OneViewer is an Access for a dashboard of one person: whoever presents
// key is v. `sluice dashboard` on a workstation makes a random key and
// prints the link that logs in with it (Options.LinkLogin), so that the
// person's credentials, which v acts with, are not lent to every user of
// the machine who can reach its loopback port.
func OneViewer(key string, v Viewer) Access { return oneViewer{key: key, v: v} }

type oneViewer struct {
	key string
	v   Viewer
}

func (o oneViewer) Login(_ context.Context, secret string) (Viewer, error) {
	if o.key == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(o.key)) != 1 {
		return nil, Refused("That is not the key sluice dashboard printed.")
	}
	return o.v, nil
}

func (oneViewer) Request(*http.Request) (Viewer, error) { return nil, nil }
