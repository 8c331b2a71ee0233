package xdsauth_test

import (
	"context"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/xdsauth"
	"github.com/sluicehq/sluice/xds"
)

// token asks the API server for a service-account token (TokenRequest),
// as the kubelet does for a projected volume.
func token(t *testing.T, cs kubernetes.Interface, ns, sa, audience string, bound *corev1.Secret) string {
	t.Helper()
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: new(int64(600))}}
	if bound != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: bound.Name, UID: bound.UID}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

func serviceAccounts(t *testing.T, cs kubernetes.Interface, ns string, names ...string) {
	t.Helper()
	for _, n := range names {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: ns}}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// selfSignedCA runs the CA's leader part once and returns the serving
// side and the bundle clients trust (the ConfigMap's ca.crt).
func selfSignedCA(t *testing.T, cs kubernetes.Interface, ns string, now func() time.Time) (*xdsauth.SelfSigned, *x509.CertPool) {
	t.Helper()
	s := &xdsauth.SelfSigned{
		Client: cs, Namespace: ns, SecretName: "sluice-xds-ca", ConfigMapName: "sluice-xds-ca",
		DNSNames: xdsauth.ServiceDNSNames("sluice-xds", ns), Now: now, Log: logr.Discard(),
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := s.Writer().Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, bundle(t, cs, ns)
}

func bundle(t *testing.T, cs kubernetes.Interface, ns string) *x509.CertPool {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "sluice-xds-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
		t.Fatalf("configmap sluice-xds-ca has no certificate: %q", cm.Data)
	}
	return pool
}

// A real kube-apiserver verifies the tokens: a pod's projected token for
// Sluice's audience opens a stream whose node id names its service
// account; no token, a token for another audience, a forged token or a
// valid token claiming another service account's node id are refused,
// each with its code and counted by reason.
func TestTokenReviewStreams(t *testing.T) {
	t.Parallel()
	cs := clientset(t)
	ns := kubetest.Namespace(t, env.Client(t), "xdsauth-token-")
	serviceAccounts(t, cs, ns, "reviews", "ratings")
	ca, roots := selfSignedCA(t, cs, ns, nil)
	reg := prometheus.NewRegistry()
	srv, addr := serveXDS(t, xds.Options{
		TLS:           &xds.TLSFiles{GetCertificate: ca.GetCertificate},
		Authenticator: xds.FirstOf(xds.BearerToken(&xdsauth.TokenReview{Reviews: cs.AuthenticationV1().TokenReviews()})),
		Registerer:    reg,
	})
	serverName := "sluice-xds." + ns + ".svc"
	reviews := "spiffe://cluster.local/ns/" + ns + "/sa/reviews"
	good := token(t, cs, ns, "reviews", xdsauth.DefaultAudience, nil)
	apiToken := token(t, cs, ns, "reviews", "https://kubernetes.default.svc", nil)
	forged := good[:strings.LastIndexByte(good, '.')+1] + "c2lnbmF0dXJl"

	tests := []struct {
		name, token, node string
		code              codes.Code
		reason            string
	}{
		{name: "its own service account, one instance", token: good, node: reviews + "/reviews-7d9f-abcde"},
		{name: "its own service account", token: good, node: reviews},
		{name: "no token", node: reviews, code: codes.Unauthenticated, reason: xds.ReasonNoCredentials},
		{name: "a token for the API server's audience", token: apiToken, node: reviews, code: codes.Unauthenticated, reason: xds.ReasonTokenRejected},
		{name: "a forged signature", token: forged, node: reviews, code: codes.Unauthenticated, reason: xds.ReasonTokenRejected},
		{name: "garbage", token: "not-a-token", node: reviews, code: codes.Unauthenticated, reason: xds.ReasonTokenRejected},
		{name: "another service account's node id", token: good, node: "spiffe://cluster.local/ns/" + ns + "/sa/ratings", code: codes.PermissionDenied, reason: xds.ReasonMismatch},
		{name: "another namespace's node id", token: good, node: "spiffe://cluster.local/ns/other/sa/reviews", code: codes.PermissionDenied, reason: xds.ReasonMismatch},
	}
	want := map[string]float64{}
	for _, tc := range tests {
		err := openADS(t, srv, addr, roots, serverName, tc.token, tc.node)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
		if tc.code != codes.OK {
			want[tc.reason]++
		}
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sluice_xds_refused_streams_total" {
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v > 0 {
					got[m.GetLabel()[0].GetValue()] = v
				}
			}
		}
	}
	for r, n := range want {
		if got[r] != n {
			t.Errorf("refused streams by reason %v, want %v", got, want)
			break
		}
	}
}

// countingReviews counts the TokenReviews sent to the API server.
type countingReviews struct {
	authnclient.TokenReviewInterface
	n atomic.Int32
}

func (c *countingReviews) Create(ctx context.Context, tr *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error) {
	c.n.Add(1)
	return c.TokenReviewInterface.Create(ctx, tr, opts)
}

// An accepted token is asked about again after CacheTTL or at its own
// expiry, whichever comes first.
func TestTokenReviewCache(t *testing.T) {
	t.Parallel()
	cs := clientset(t)
	ns := kubetest.Namespace(t, env.Client(t), "xdsauth-cache-")
	serviceAccounts(t, cs, ns, "reviews")
	ctx := context.Background()
	holder, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "holder", Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, cs, ns, "reviews", xdsauth.DefaultAudience, holder)
	start := time.Now()
	clk := &clock{now: start}
	reviews := &countingReviews{TokenReviewInterface: cs.AuthenticationV1().TokenReviews()}
	v := &xdsauth.TokenReview{Reviews: reviews, CacheTTL: 2 * time.Minute, TrustDomain: "example.org", Now: clk.Now}

	id, err := v.VerifyToken(ctx, tok)
	if err != nil || id.SPIFFE != "spiffe://example.org/ns/"+ns+"/sa/reviews" || id.Namespace != ns || id.ServiceAccount != "reviews" || id.Method != xds.MethodToken {
		t.Fatalf("VerifyToken = %+v, %v", id, err)
	}
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, holder.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Set(start.Add(time.Minute))
	if _, err := v.VerifyToken(ctx, tok); err != nil || reviews.n.Load() != 1 {
		t.Fatalf("within CacheTTL: %v after %d reviews, want the cached acceptance after 1", err, reviews.n.Load())
	}
	// After CacheTTL the API server is asked again. (envtest's API server
	// still accepts a token whose bound Secret was deleted, so the test
	// counts reviews rather than expecting the revocation.)
	clk.Set(start.Add(3 * time.Minute))
	if _, err := v.VerifyToken(ctx, tok); reviews.n.Load() != 2 {
		t.Fatalf("after CacheTTL: %v after %d reviews, want a second review", err, reviews.n.Load())
	}

	// A token expiring before CacheTTL is reviewed again at its expiry.
	long := &xdsauth.TokenReview{Reviews: reviews, CacheTTL: time.Hour, Now: clk.Now}
	tok2 := token(t, cs, ns, "reviews", xdsauth.DefaultAudience, nil)
	clk.Set(start)
	if _, err := long.VerifyToken(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	before := reviews.n.Load()
	clk.Set(start.Add(11 * time.Minute)) // past the token's 10-minute expiry
	if _, err := long.VerifyToken(ctx, tok2); err != nil || reviews.n.Load() != before+1 {
		t.Fatalf("past the token's expiry: %v, %d reviews, want a new review", err, reviews.n.Load()-before)
	}
}
