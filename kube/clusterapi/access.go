package clusterapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rolloutapi"
)

// AccessOptions tune an Access.
type AccessOptions struct {
	// Proxy, when set, trusts an authenticating proxy in front of the
	// dashboard to say who a request comes from.
	Proxy *Proxy
	// Changed, when set, signals that what the Backend reads may have
	// changed (Changes), so that viewers' pages update at once.
	Changed func() <-chan struct{}
	// ReviewTTL is how long a token the API server accepted is not asked
	// about again (TokenReview); a session ends at the first review that
	// refuses it. Default 1m.
	ReviewTTL time.Duration
	// DecisionTTL is how long one answer of the API server's authorizer
	// (SubjectAccessReview) is reused for one viewer: a change of RBAC
	// reaches an open dashboard within it. Default 10s.
	DecisionTTL time.Duration
	// HistoryTTL is how long a Rollout's Events, read once, serve every
	// viewer; live pages render again at every change. Default 2s.
	HistoryTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Access admits the web dashboard's viewers by their own Kubernetes
// identity and lets each use a Backend as far as RBAC allows them: it is
// the dashboard's rolloutapi.Access in `sluice controller`, whose Backend
// reads with the controller's credentials (from its cache) and sends
// commands with them, recorded under the viewer's name.
//
// A viewer logs in with a bearer token the API server accepts (a
// TokenReview: a service account's token, an OIDC ID token the API server
// is configured for, ...), or an authenticating proxy in front names them
// (Proxy). Then every read and command is first put to the API server's
// authorizer as a SubjectAccessReview for that user and their groups, with
// the verbs the same request would need from kubectl or the sluice CLI:
//
//	table (List)              list rollouts.sluice.dev, per namespace
//	rollout page (Get)        get rollouts.sluice.dev <name>
//	  analysis measurements   get analysisruns.sluice.dev (else left out)
//	  rejected commits        get gitsources.sluice.dev (else left out)
//	events (History)          list events
//	commands, and the buttons patch rollouts.sluice.dev <name>
//
// so a RoleBinding to crds/rbac/user_role.yaml's sluice-rollout-operator
// in a namespace gives the same rights in the dashboard as with the CLI,
// and one to a role without patch shows that namespace with no buttons.
// Anything the authorizer does not allow, or cannot be asked about, is
// refused: Access fails closed.
type Access struct {
	b       *Backend
	c       client.Client
	o       AccessOptions
	history *memo[[]rolloutapi.Event]
}

var _ rolloutapi.Access = (*Access)(nil)

// NewAccess returns an Access over b, whose Options.StatedActor must be
// set; c creates TokenReviews and SubjectAccessReviews (the controller's
// credentials: create on both).
func NewAccess(b *Backend, c client.Client, o AccessOptions) (*Access, error) {
	if !b.o.StatedActor {
		return nil, errors.New("clusterapi: an Access needs a Backend with StatedActor, so commands are recorded under the viewer's name")
	}
	if o.Proxy != nil && o.Proxy.Trusted == nil {
		return nil, errors.New("clusterapi: an authenticating proxy needs a way to tell its requests (Proxy.Trusted)")
	}
	if o.ReviewTTL == 0 {
		o.ReviewTTL = time.Minute
	}
	if o.DecisionTTL == 0 {
		o.DecisionTTL = 10 * time.Second
	}
	if o.HistoryTTL == 0 {
		o.HistoryTTL = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Access{b: b, c: c, o: o, history: newMemo[[]rolloutapi.Event](o.HistoryTTL, o.Now)}, nil
}

// Login admits the holder of a bearer token the API server accepts.
func (a *Access) Login(ctx context.Context, token string) (rolloutapi.Viewer, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, rolloutapi.Refused("Paste a Kubernetes bearer token.")
	}
	user, err := a.review(ctx, token)
	if err != nil {
		return nil, err
	}
	v := a.viewer(user, token)
	v.reviewed = a.o.Now()
	return v.backendView(), nil
}

// review asks the API server whose token this is.
func (a *Access) review(ctx context.Context, token string) (authenticationv1.UserInfo, error) {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if err := a.c.Create(ctx, tr); err != nil {
		return authenticationv1.UserInfo{}, &apiError{kind: rolloutapi.ErrUnavailable, msg: "ask the API server whose token this is (TokenReview): " + err.Error(), cause: err}
	}
	if !tr.Status.Authenticated || tr.Status.User.Username == "" {
		msg := "The API server does not accept that token"
		if e := tr.Status.Error; e != "" {
			msg += ": " + untrusted.Text(e, 256)
		}
		return authenticationv1.UserInfo{}, rolloutapi.Refused(msg + ".")
	}
	return tr.Status.User, nil
}

// Request admits the user an authenticating proxy names, when the request
// comes from the proxy.
func (a *Access) Request(r *http.Request) (rolloutapi.Viewer, error) {
	if a.o.Proxy == nil {
		return nil, nil
	}
	user, ok, err := a.o.Proxy.identify(r)
	if err != nil || !ok {
		return nil, err
	}
	return a.viewer(user, "").backendView(), nil
}

func (a *Access) viewer(user authenticationv1.UserInfo, token string) *Viewer {
	return &Viewer{a: a, user: user, token: token, decisions: newMemo[decision](a.o.DecisionTTL, a.o.Now)}
}

// Viewer is one person on the dashboard, with their Kubernetes identity:
// a rolloutapi.Viewer whose Backend asks the authorizer before every read
// and command (Access).
type Viewer struct {
	a     *Access
	user  authenticationv1.UserInfo
	token string // "" when a proxy vouched for the viewer

	decisions *memo[decision]

	mu       sync.Mutex
	reviewed time.Time
}

// backendView is v as a rolloutapi.Viewer, a Watcher when the Access has
// a change signal.
func (v *Viewer) backendView() rolloutapi.Viewer {
	if v.a.o.Changed != nil {
		return watchingViewer{v}
	}
	return v
}

type watchingViewer struct{ *Viewer }

func (w watchingViewer) Backend() rolloutapi.Backend { return w }
func (w watchingViewer) Changed() <-chan struct{}    { return w.a.o.Changed() }

// Identity is the user's name, as the API server knows it.
func (v *Viewer) Identity() rolloutapi.Identity { return rolloutapi.Identity{Name: v.user.Username} }

// Backend is v itself: reads and commands as far as RBAC allows v.
func (v *Viewer) Backend() rolloutapi.Backend { return v }

// Check asks the API server about the viewer's token again once ReviewTTL
// has passed: a token that expired or was revoked ends the session. When
// the API server cannot be asked, the last answer holds for up to five
// times ReviewTTL. A viewer a proxy vouched for is vouched for again with
// every request.
func (v *Viewer) Check(ctx context.Context) error {
	if v.token == "" {
		return nil
	}
	v.mu.Lock()
	last := v.reviewed
	v.mu.Unlock()
	now := v.a.o.Now()
	if now.Sub(last) < v.a.o.ReviewTTL {
		return nil
	}
	user, err := v.a.review(ctx, v.token)
	var refused rolloutapi.Refused
	switch {
	case errors.As(err, &refused):
		return err
	case err != nil && now.Sub(last) > 5*v.a.o.ReviewTTL:
		return err
	case err != nil:
		return nil
	case user.Username != v.user.Username:
		return rolloutapi.Refused("The token now belongs to someone else.")
	}
	v.mu.Lock()
	v.reviewed = now
	v.mu.Unlock()
	return nil
}

// MayCommand reports whether the viewer may patch the Rollout, as the
// sluice.dev/command annotation the CLI sets needs.
func (v *Viewer) MayCommand(ctx context.Context, namespace, name string) (bool, string) {
	if err := v.may(ctx, "patch", rollouts, namespace, name); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// List returns the Rollouts of the namespaces where the viewer may list
// Rollouts (all, with the right to list them in every namespace).
func (v *Viewer) List(ctx context.Context) ([]rolloutapi.Rollout, error) {
	all, err := v.a.b.List(ctx)
	if err != nil {
		return nil, err
	}
	if v.may(ctx, "list", rollouts, "", "") == nil {
		return all, nil
	}
	var out []rolloutapi.Rollout
	allowed := map[string]bool{}
	for _, r := range all {
		ok, seen := allowed[r.Namespace]
		if !seen {
			ok = v.may(ctx, "list", rollouts, r.Namespace, "") == nil
			allowed[r.Namespace] = ok
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Get returns the Rollout if the viewer may get it, with the parts of its
// detail they may read.
func (v *Viewer) Get(ctx context.Context, namespace, name string) (rolloutapi.Rollout, error) {
	if err := v.may(ctx, "get", rollouts, namespace, name); err != nil {
		return rolloutapi.Rollout{}, err
	}
	return v.a.b.getFor(ctx, namespace, name, func(res resource) bool { return v.may(ctx, "get", res, namespace, "") == nil })
}

// History returns the Rollout's Events if the viewer may list Events in
// its namespace.
func (v *Viewer) History(ctx context.Context, namespace, name string, limit int) ([]rolloutapi.Event, error) {
	if err := v.may(ctx, "get", rollouts, namespace, name); err != nil {
		return nil, err
	}
	if err := v.may(ctx, "list", events, namespace, ""); err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s/%s/%d", namespace, name, limit)
	return v.a.history.get(key, func() ([]rolloutapi.Event, error) { return v.a.b.History(ctx, namespace, name, limit) })
}

// Command sends the command under the viewer's name if they may patch the
// Rollout, whatever req.By says.
func (v *Viewer) Command(ctx context.Context, namespace, name string, req rolloutapi.CommandRequest) (rolloutapi.CommandResponse, error) {
	if err := v.may(ctx, "patch", rollouts, namespace, name); err != nil {
		return rolloutapi.CommandResponse{}, err
	}
	req.By = v.user.Username
	return v.a.b.Command(ctx, namespace, name, req)
}

// resource is an API resource RBAC rules name.
type resource struct{ group, name string }

var (
	rollouts     = resource{"sluice.dev", "rollouts"}
	analysisRuns = resource{"sluice.dev", "analysisruns"}
	gitSources   = resource{"sluice.dev", "gitsources"}
	events       = resource{"", "events"}
)

func (r resource) String() string {
	if r.group == "" {
		return r.name
	}
	return r.name + "." + r.group
}

type attributes struct {
	verb           string
	res            resource
	namespace, obj string
}

type decision struct {
	allowed bool
	reason  string
}

// may asks the authorizer whether the viewer may verb res (named obj, or
// any) in namespace ("" for all), and returns an ErrForbidden saying so
// when not, in the API server's words. Answers are kept DecisionTTL.
func (v *Viewer) may(ctx context.Context, verb string, res resource, namespace, obj string) error {
	at := attributes{verb: verb, res: res, namespace: namespace, obj: obj}
	d, err := v.decisions.get(fmt.Sprintf("%s %s %s/%s", at.verb, at.res, at.namespace, at.obj), func() (decision, error) { return v.ask(ctx, at) })
	if err != nil {
		return err
	}
	if d.allowed {
		return nil
	}
	return &apiError{kind: rolloutapi.ErrForbidden, msg: forbidden(v.user.Username, at, d.reason), cause: rolloutapi.ErrForbidden}
}

// ask is one SubjectAccessReview.
func (v *Viewer) ask(ctx context.Context, at attributes) (decision, error) {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, vs := range v.user.Extra {
		extra[k] = authorizationv1.ExtraValue(vs)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: v.user.Username, UID: v.user.UID, Groups: v.user.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: at.namespace, Verb: at.verb, Group: at.res.group, Resource: at.res.name, Name: at.obj,
		},
	}}
	if err := v.a.c.Create(ctx, sar); err != nil {
		return decision{}, &apiError{kind: rolloutapi.ErrUnavailable,
			msg: fmt.Sprintf("ask the API server whether %s may %s %s (SubjectAccessReview): %v", v.user.Username, at.verb, at.res, err), cause: err}
	}
	st := sar.Status
	return decision{allowed: st.Allowed && !st.Denied, reason: cmp.Or(st.Reason, st.EvaluationError)}, nil
}

// forbidden words a refusal as the API server words its own.
func forbidden(user string, at attributes, reason string) string {
	what := at.res.String()
	if at.obj != "" {
		what += fmt.Sprintf(" %q", at.obj)
	}
	where := "at the cluster scope"
	if at.namespace != "" {
		where = fmt.Sprintf("in the namespace %q", at.namespace)
	}
	msg := fmt.Sprintf("%s is forbidden: User %q cannot %s %s", what, user, at.verb, where)
	if reason != "" {
		msg += ": " + untrusted.Text(reason, 256)
	}
	return msg
}
