package clusterapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// operatorRole installs crds/rbac/user_role.yaml's ClusterRole, the one
// people get to drive rollouts with the CLI, and returns its name: the
// dashboard's rights are tested against the same role.
func operatorRole(t *testing.T, c client.Client) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "crds", "rbac", "user_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &role); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return role.Name
}

// readerRole is a Role of ns that may only get and list Rollouts.
func readerRole(t *testing.T, c client.Client, ns string) string {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollout-reader"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"sluice.dev"}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list"}},
	}}
	if err := c.Create(context.Background(), role); err != nil {
		t.Fatal(err)
	}
	return role.Name
}

// bind binds subject to a Role (kind Role) or ClusterRole in ns.
func bind(t *testing.T, c client.Client, ns, kind, role string, subject rbacv1.Subject) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "dashboard-test-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
		Subjects:   []rbacv1.Subject{subject},
	}
	if err := c.Create(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
}

// serviceAccount creates a service account and returns its user name, a
// token the API server issued for it (TokenRequest, as kubectl create
// token does), and a function that revokes the token by deleting the
// service account.
func serviceAccount(t *testing.T, c client.Client, ns, name string) (user, token string, revoke func()) {
	t.Helper()
	cfg, _ := env.Start(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		ExpirationSeconds: new(int64(600)),
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return "system:serviceaccount:" + ns + ":" + name, tr.Status.Token, func() {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := c.Delete(ctx, sa); err != nil {
			t.Fatal(err)
		}
	}
}

// controllerAccess is the Access `sluice controller` builds: a Backend
// with the controller's credentials (here an administrator's) recording
// the viewer's name, and the same client for the reviews.
func controllerAccess(t *testing.T, o AccessOptions) *Access {
	t.Helper()
	c := admin(t)
	a, err := NewAccess(newBackend(c, Options{StatedActor: true}), c, o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAccessFollowsRBAC: people log in with real service-account tokens
// (TokenReview), and what each sees and may do is what their RoleBindings
// give them (SubjectAccessReview): alice, bound to the CLI's operator role
// in team-a, sees and steers team-a only; bob, who may get and list
// team-a's Rollouts and nothing else, sees them without commands, events
// or measurements; a command refused leaves the Rollout as it was.
func TestAccessFollowsRBAC(t *testing.T) {
	t.Parallel()
	c := admin(t)
	teamA, teamB, people := newNamespace(t, c), newNamespace(t, c), newNamespace(t, c)
	web := newRollout(t, c, teamA, "web")
	newRollout(t, c, teamB, "api")
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Namespace: teamA, Name: "web-run-1",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(web, v1alpha1.GroupVersion.WithKind("Rollout"))}},
		Spec: v1alpha1.AnalysisRunSpec{Templates: []v1alpha1.TemplateRef{{Name: "success-rate"}}, Metrics: []v1alpha1.Metric{{
			Name: "success-rate", SuccessCondition: "result[0] >= 0.95",
			Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{Query: "vector(1)"}},
		}}}}
	if err := c.Create(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	web.Status.Analysis = []v1alpha1.AnalysisRunStatus{{Name: run.Name, Kind: v1alpha1.AnalysisStepKind, Phase: v1alpha1.AnalysisRunning,
		Templates: run.Spec.Templates}}
	if err := c.Status().Update(context.Background(), web); err != nil {
		t.Fatal(err)
	}
	aliceUser, aliceToken, _ := serviceAccount(t, c, people, "alice")
	bobUser, bobToken, _ := serviceAccount(t, c, people, "bob")
	bind(t, c, teamA, "ClusterRole", operatorRole(t, c), rbacv1.Subject{Kind: "ServiceAccount", Namespace: people, Name: "alice"})
	bind(t, c, teamA, "Role", readerRole(t, c, teamA), rbacv1.Subject{Kind: "ServiceAccount", Namespace: people, Name: "bob"})
	playController(t, c, teamA, func(controller.Command) string { return "paused" })

	a := controllerAccess(t, AccessOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Login(ctx, "not-a-token"); !errors.Is(err, rolloutapi.ErrUnauthorized) || !strings.Contains(err.Error(), "does not accept that token") {
		t.Fatalf("login with a made-up token: %v", err)
	}
	alice, err := a.Login(ctx, aliceToken)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := a.Login(ctx, bobToken)
	if err != nil {
		t.Fatal(err)
	}
	if alice.Identity().Name != aliceUser || bob.Identity().Name != bobUser {
		t.Fatalf("identities %v and %v, want %s and %s", alice.Identity(), bob.Identity(), aliceUser, bobUser)
	}

	for _, v := range []rolloutapi.Viewer{alice, bob} {
		rs, err := v.Backend().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var mine []string
		for _, r := range rs {
			if r.Namespace == teamA || r.Namespace == teamB {
				mine = append(mine, r.Key())
			}
		}
		if !slices.Equal(mine, []string{teamA + "/web"}) {
			t.Errorf("%s lists %v of the test's rollouts, want %s/web only", v.Identity().Name, mine, teamA)
		}
		if _, err := v.Backend().Get(ctx, teamB, "api"); !errors.Is(err, rolloutapi.ErrForbidden) ||
			!strings.Contains(err.Error(), `rollouts.sluice.dev "api" is forbidden: User "`+v.Identity().Name+`" cannot get in the namespace "`+teamB+`"`) {
			t.Errorf("%s gets %s/api: %v, want forbidden in the API server's words", v.Identity().Name, teamB, err)
		}
		_, err = v.Backend().Command(ctx, teamB, "api", rolloutapi.CommandRequest{Kind: v1alpha1.CommandAbort})
		if !errors.Is(err, rolloutapi.ErrForbidden) || !strings.Contains(err.Error(), "cannot patch") {
			t.Errorf("%s aborts %s/api: %v, want forbidden", v.Identity().Name, teamB, err)
		}
		if ok, _ := v.MayCommand(ctx, teamB, "api"); ok {
			t.Errorf("%s may command %s/api", v.Identity().Name, teamB)
		}
	}
	api := &v1alpha1.Rollout{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: teamB, Name: "api"}, api); err != nil {
		t.Fatal(err)
	}
	if _, ok := api.Annotations[controller.CommandAnnotation]; ok || api.Status.LastCommand != nil {
		t.Fatalf("a refused command reached %s/api: %v, %+v", teamB, api.Annotations, api.Status.LastCommand)
	}

	// alice steers team-a's Rollout; the command is hers.
	if ok, why := alice.MayCommand(ctx, teamA, "web"); !ok {
		t.Fatalf("alice may not command %s/web: %s", teamA, why)
	}
	resp, err := alice.Backend().Command(ctx, teamA, "web", rolloutapi.CommandRequest{Kind: v1alpha1.CommandPause, By: "someone-else"})
	if err != nil || resp.Result != "paused" {
		t.Fatalf("alice pauses: %+v, %v", resp, err)
	}
	if lc := lastCommand(t, c, teamA, "web"); lc == nil || lc.By != aliceUser {
		t.Fatalf("status.lastCommand %+v, want by %s", lc, aliceUser)
	}
	ro, err := alice.Backend().Get(ctx, teamA, "web")
	if err != nil {
		t.Fatal(err)
	}
	if d := ro.Detail; d == nil || len(d.Analysis) != 1 || d.Analysis[0].Name != run.Name || d.Analysis[0].Metrics[0].SuccessCondition != "result[0] >= 0.95" {
		t.Errorf("alice's detail %+v: want the AnalysisRun's measurements", ro.Detail)
	}
	if _, err := alice.Backend().History(ctx, teamA, "web", 10); err != nil {
		t.Errorf("alice's history: %v", err)
	}

	// bob looks and may not act.
	if ok, why := bob.MayCommand(ctx, teamA, "web"); ok || !strings.Contains(why, `User "`+bobUser+`" cannot patch`) {
		t.Errorf("bob may command %s/web: %v %q", teamA, ok, why)
	}
	if _, err := bob.Backend().Command(ctx, teamA, "web", rolloutapi.CommandRequest{Kind: v1alpha1.CommandResume}); !errors.Is(err, rolloutapi.ErrForbidden) {
		t.Errorf("bob resumes: %v, want forbidden", err)
	}
	if _, err := bob.Backend().History(ctx, teamA, "web", 10); !errors.Is(err, rolloutapi.ErrForbidden) || !strings.Contains(err.Error(), "cannot list") {
		t.Errorf("bob's history: %v, want forbidden: he may not list events", err)
	}
	ro, err = bob.Backend().Get(ctx, teamA, "web")
	if err != nil {
		t.Fatal(err)
	}
	if ro.Detail == nil || len(ro.Detail.Analysis) != 0 {
		t.Errorf("bob's detail %+v: want no measurements, he may not get analysisruns", ro.Detail)
	}
}

// TestAccessEndsRevokedTokens: a session's token is asked about again once
// ReviewTTL has passed; a revoked one ends it.
func TestAccessEndsRevokedTokens(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	_, token, revoke := serviceAccount(t, c, ns, "carol")
	now := time.Now()
	clock := func() time.Time { return now }
	a := controllerAccess(t, AccessOptions{ReviewTTL: time.Minute, Now: clock})
	ctx := context.Background()
	v, err := a.Login(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	revoke()
	if err := v.Check(ctx); err != nil {
		t.Fatalf("within the review's TTL: %v", err)
	}
	// The API server learns of the deletion through its own informer.
	var err2 error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		now = now.Add(2 * time.Minute)
		if err2 = v.Check(ctx); err2 != nil {
			break
		}
	}
	if !errors.Is(err2, rolloutapi.ErrUnauthorized) {
		t.Fatalf("after the TTL, with the token revoked: %v, want the session ended", err2)
	}
}

// TestAccessProxy: an authenticating proxy's headers name the user and
// their groups, and RBAC bound to a group counts; the same headers from
// anywhere else are refused.
func TestAccessProxy(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	newRollout(t, c, ns, "web")
	bind(t, c, ns, "ClusterRole", operatorRole(t, c), rbacv1.Subject{Kind: "Group", APIGroup: rbacv1.GroupName, Name: ns + "-devs"})
	a := controllerAccess(t, AccessOptions{Proxy: &Proxy{Trusted: TrustNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})}})
	req := func(from string, hdr map[string][]string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/dashboard/", nil)
		r.RemoteAddr = from
		for k, vs := range hdr {
			r.Header[http.CanonicalHeaderKey(k)] = vs
		}
		return r
	}
	dave := map[string][]string{"X-Remote-User": {"dave"}, "X-Remote-Group": {ns + "-devs", "qa"}}
	v, err := a.Request(req("127.0.0.1:40000", dave))
	if err != nil || v == nil || v.Identity().Name != "dave" {
		t.Fatalf("from the proxy: %v, %v", v, err)
	}
	ctx := context.Background()
	if ok, why := v.MayCommand(ctx, ns, "web"); !ok {
		t.Fatalf("dave, in the group bound to the operator role, may not command: %s", why)
	}
	if _, err := v.Backend().Get(ctx, ns, "web"); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*http.Request{
		"another address":      req("10.1.2.3:40000", dave),
		"a group header alone": req("10.1.2.3:40000", map[string][]string{"X-Remote-Group": {"system:masters"}}),
	} {
		if v, err := a.Request(r); err == nil || v != nil || !strings.Contains(err.Error(), "did not come from the trusted authenticating proxy") {
			t.Errorf("%s: %v, %v; want refused", name, v, err)
		}
	}
	if v, err := a.Request(req("10.1.2.3:40000", nil)); v != nil || err != nil {
		t.Errorf("a request naming no one: %v, %v; want nothing (the login form)", v, err)
	}
	if v, err := a.Request(req("127.0.0.1:40000", map[string][]string{"X-Remote-Group": {"qa"}})); v != nil || err != nil {
		t.Errorf("the proxy naming no user: %v, %v; want nothing", v, err)
	}
}

func TestTrustClientCertificate(t *testing.T) {
	t.Parallel()
	cert := func(cn string, dns ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		leaf := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
		return r
	}
	plain := httptest.NewRequest(http.MethodGet, "/", nil)
	unverified := httptest.NewRequest(http.MethodGet, "/", nil)
	unverified.TLS = &tls.ConnectionState{}
	for _, tc := range []struct {
		name  string
		names []string
		r     *http.Request
		want  bool
	}{
		{"verified, any name", nil, cert("oauth2-proxy"), true},
		{"allowed common name", []string{"oauth2-proxy"}, cert("oauth2-proxy"), true},
		{"allowed DNS name", []string{"proxy.sluice-system.svc"}, cert("x", "proxy.sluice-system.svc"), true},
		{"other name", []string{"oauth2-proxy"}, cert("mallory"), false},
		{"no TLS", nil, plain, false},
		{"no verified certificate", nil, unverified, false},
	} {
		if got := TrustClientCertificate(tc.names)(tc.r); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDetailOfGitSourceRejection: a Rollout a GitSource applied shows the
// commit the source rejected, with its problems.
func TestDetailOfGitSourceRejection(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	gs := &v1alpha1.GitSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deploy"},
		Spec: v1alpha1.GitSourceSpec{URL: "https://git.example/deploy.git", Ref: v1alpha1.GitRef{Branch: "main"}}}
	if err := c.Create(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	gs.Status = v1alpha1.GitSourceStatus{
		LastAppliedCommit: "1111111", LastAttemptedCommit: "2222222", ProblemCount: 3,
		Problems: []v1alpha1.GitSourceProblem{{File: "web.yaml", Line: 7, Field: "spec.strategy.canary.steps[0].setWeight", Reason: "must be at most 100"}, {File: "api.yaml", Line: 1, Reason: "<b>bad</b> YAML"}},
		Conditions: []metav1.Condition{{Type: v1alpha1.GitSourceReady, Status: metav1.ConditionFalse, Reason: v1alpha1.GitSourceCommitRejected,
			Message: "commit rejected", LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Update(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	ro := newRollout(t, c, ns, "web")
	ro.Annotations = map[string]string{"sluice.dev/git-source": ns + "/deploy"}
	if err := c.Update(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	got, err := backendAs(t, "reader", Options{}).Get(context.Background(), ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"web.yaml:7: spec.strategy.canary.steps[0].setWeight: must be at most 100", "api.yaml:1: <b>bad</b> YAML", "1 more problem not listed"}
	if d := got.Detail; d == nil || len(d.Rejected) != 1 || d.Rejected[0].SHA != "2222222" || !slices.Equal(d.Rejected[0].Problems, want) {
		t.Fatalf("detail %+v, want the rejected commit 2222222 with %q", got.Detail, want)
	}
}
