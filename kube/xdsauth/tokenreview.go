// Package xdsauth is controller mode's xDS authentication: Kubernetes
// service-account tokens verified with the TokenReview API (what istiod
// accepts from proxyless gRPC, so a pod needs no certificate files), and
// the xDS server's own serving certificate, issued from a CA Sluice keeps
// in a Secret or taken from a Secret cert-manager keeps.
package xdsauth

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/xds"
)

// DefaultAudience is the audience a pod requests its projected token for.
// A token for any other audience (the API server's own, another
// service's) is refused, so a token stolen from elsewhere does not open
// xDS, and a token for Sluice opens nothing else.
const DefaultAudience = "sluice.dev/xds"

// TokenReview verifies service-account tokens by asking the API server
// (authentication.k8s.io/v1 TokenReview) and implements xds.TokenVerifier.
// A token is accepted when the API server says it is authenticated, valid
// for Audience, and belongs to a service account; its identity is
// spiffe://<TrustDomain>/ns/<ns>/sa/<sa>.
//
// Positive answers are cached for CacheTTL but never past the token's own
// expiry, so a reconnecting fleet costs one review per token, and a
// refused token is remembered for a few seconds so a client retrying a bad
// token cannot make every attempt a request to the API server.
type TokenReview struct {
	// Reviews is the TokenReview client: clientset.AuthenticationV1().TokenReviews().
	Reviews authnclient.TokenReviewInterface
	// Audience the token must be valid for; default DefaultAudience.
	Audience string
	// TrustDomain of the identities; default "cluster.local".
	TrustDomain string
	// CacheTTL bounds how long an accepted token is trusted without
	// asking again; default 1 minute. A deleted service account or pod
	// is noticed at the next stream after that.
	CacheTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time

	once  sync.Once
	mu    sync.Mutex
	cache map[[32]byte]*list.Element
	order *list.List // of *entry, most recently stored first
}

type entry struct {
	key     [32]byte
	id      xds.Identity
	err     error
	expires time.Time
}

const (
	// negativeTTL: how long a refused token stays refused without asking.
	negativeTTL = 5 * time.Second
	// maxCached bounds the cache; the oldest entries go first.
	maxCached = 10000
	// DefaultTrustDomain is Kubernetes' and Istio's default.
	DefaultTrustDomain = "cluster.local"
)

func (r *TokenReview) init() {
	r.once.Do(func() {
		if r.Audience == "" {
			r.Audience = DefaultAudience
		}
		if r.TrustDomain == "" {
			r.TrustDomain = DefaultTrustDomain
		}
		if r.CacheTTL <= 0 {
			r.CacheTTL = time.Minute
		}
		if r.Now == nil {
			r.Now = time.Now
		}
		r.cache = map[[32]byte]*list.Element{}
		r.order = list.New()
	})
}

// VerifyToken implements xds.TokenVerifier.
func (r *TokenReview) VerifyToken(ctx context.Context, token string) (xds.Identity, error) {
	r.init()
	key := sha256.Sum256([]byte(token))
	now := r.Now()
	if e, ok := r.lookup(key, now); ok {
		return e.id, e.err
	}
	id, err := r.review(ctx, token)
	switch {
	case err == nil:
		exp := now.Add(r.CacheTTL)
		if te, ok := tokenExpiry(token); ok && te.Before(exp) {
			exp = te
		}
		r.store(&entry{key: key, id: id, expires: exp})
	case refusedFor(err, xds.ReasonTokenRejected, xds.ReasonNotWorkload):
		r.store(&entry{key: key, err: err, expires: now.Add(negativeTTL)})
	}
	return id, err
}

func (r *TokenReview) review(ctx context.Context, token string) (xds.Identity, error) {
	tr, err := r.Reviews.Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{r.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return xds.Identity{}, xds.Refuse(xds.ReasonUnavailable, codes.Unavailable, "token review failed, try again: %s", untrusted.Text(err.Error(), 256))
	}
	st := tr.Status
	if !st.Authenticated {
		// The API server's reason (expired, wrong audience, unknown
		// signer) goes to the client, bounded, to help whoever set up the
		// pod; it reveals nothing the token holder does not know.
		return xds.Identity{}, xds.Refuse(xds.ReasonTokenRejected, codes.Unauthenticated,
			"the service-account token was not accepted for audience %q: %s", r.Audience, untrusted.Text(st.Error, 256))
	}
	// An authenticator that ignores audiences answers with none; the
	// token may then be meant for someone else.
	if !slices.Contains(st.Audiences, r.Audience) {
		return xds.Identity{}, xds.Refuse(xds.ReasonTokenRejected, codes.Unauthenticated,
			"the token is not valid for audience %q (request a projected token with that audience)", r.Audience)
	}
	ns, sa, ok := serviceAccount(st.User.Username)
	if !ok {
		return xds.Identity{}, xds.Refuse(xds.ReasonNotWorkload, codes.PermissionDenied,
			"the token belongs to %q, not to a service account", untrusted.Text(st.User.Username, 128))
	}
	return xds.KubernetesIdentity(r.TrustDomain, ns, sa, xds.MethodToken), nil
}

// serviceAccount splits "system:serviceaccount:<ns>:<sa>".
func serviceAccount(user string) (ns, sa string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, sa, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return "", "", false
	}
	return ns, sa, true
}

// tokenExpiry reads the exp claim of a token the API server has just
// accepted; the claim only shortens the cache, it is never trusted to
// accept anything.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	return time.Unix(*claims.Exp, 0), true
}

func (r *TokenReview) lookup(key [32]byte, now time.Time) (*entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.cache[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		r.order.Remove(el)
		delete(r.cache, key)
		return nil, false
	}
	return e, true
}

func (r *TokenReview) store(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.cache[e.key]; ok {
		r.order.Remove(old)
	}
	r.cache[e.key] = r.order.PushFront(e)
	for r.order.Len() > maxCached {
		last := r.order.Back()
		r.order.Remove(last)
		delete(r.cache, last.Value.(*entry).key)
	}
}

func refusedFor(err error, reasons ...string) bool {
	re, ok := err.(*xds.RefusedError)
	return ok && slices.Contains(reasons, re.Reason)
}

// String names the verifier in logs.
func (r *TokenReview) String() string {
	r.init()
	return fmt.Sprintf("TokenReview(audience %q, trust domain %q)", r.Audience, r.TrustDomain)
}
