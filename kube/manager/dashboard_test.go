package manager_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/manager"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestControllerDashboard: `sluice controller` serves the dashboard with
// each viewer's own Kubernetes identity. Three service accounts log in
// with tokens the API server issued (TokenReview): alice, bound in team-a
// to the operator ClusterRole people get for the CLI (crds/rbac), sees
// team-a's Rollout and not team-b's in the table, steers hers (a promote
// recorded under her name) and gets 403 for a POST on team-b's, which
// stays untouched; bob, who may only get and list team-a's Rollouts, sees
// it with no button; a made-up token is refused. The controller runs as
// its service account with the generated role, so the reviews it asks
// for are allowed by crds/rbac/role.yaml, and the API server refuses it
// nothing.
func TestControllerDashboard(t *testing.T) {
	admin, ctrlCfg := cluster(t)
	teamA := kubetest.Namespace(t, admin, "team-a-")
	teamB := kubetest.Namespace(t, admin, "team-b-")
	people := kubetest.Namespace(t, admin, "people-")
	var logs lockedBuffer
	logSink.set(&logs)
	t.Cleanup(func() { logSink.set(nil) })

	cfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: %s
stateDir: %s
watchNamespaces: [%s, %s]
leaderElection: {enabled: false}
http: {metricsAddress: "0", probeAddress: "0", webhookAddress: "0"}
istio: {enabled: false}
reconcile: {ackPollInterval: 200ms}
xds:
  address: 127.0.0.1:0
  insecurePlaintext: true
  ackWithoutClients: true
  replicaName: dashboard
`, controllerNamespace, t.TempDir(), teamA, teamB))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := manager.New(manager.Options{
		Config: cfg, RestConfig: ctrlCfg, Log: logger("dashboard"), DashboardListener: lis,
		Registerer: prometheus.NewRegistry(), SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Start(t, "controller", c)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go playReplicaSets(ctx, admin, teamA, teamB)

	// Two Rollouts, each mid-canary at a pause for promote.
	for _, ns := range []string{teamA, teamB} {
		ro := dashboardRollout(ns, "web")
		if err := admin.Create(ctx, ro); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, admin, ro, "v1 stable", func(ro *v1alpha1.Rollout) bool { return ro.Status.Phase == v1alpha1.PhaseHealthy })
		ro.Spec.Template.Spec.Containers[0].Image = "web:v2"
		if err := admin.Update(ctx, ro); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, admin, ro, "the pause for promote", func(ro *v1alpha1.Rollout) bool {
			return ro.Status.Phase == v1alpha1.PhasePaused && ro.Status.CurrentStepIndex != nil && *ro.Status.CurrentStepIndex == 1
		})
	}

	// The people, and what RBAC gives them.
	operator := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "sluice-rollout-operator"}
	reader := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: teamA, Name: "rollout-reader"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"sluice.dev"}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list"}},
	}}
	if err := admin.Create(ctx, reader); err != nil {
		t.Fatal(err)
	}
	for name, ref := range map[string]rbacv1.RoleRef{
		"alice": operator,
		"bob":   {APIGroup: rbacv1.GroupName, Kind: "Role", Name: reader.Name},
	} {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: teamA, Name: name}, RoleRef: ref,
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: people, Name: name}}}
		if err := admin.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + lis.Addr().String() + "/dashboard/"
	alice := loginAs(t, base, saToken(t, admin, people, "alice"))
	bob := loginAs(t, base, saToken(t, admin, people, "bob"))
	if resp := postForm(t, &http.Client{}, base+"login", url.Values{"token": {"made-up"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a made-up token: %d, want 401", resp.StatusCode)
	}

	for name, v := range map[string]*http.Client{"alice": alice, "bob": bob} {
		_, page := getPage(t, v, base)
		if got := tableRows(page, teamA, teamB); !slices.Equal(got, []string{teamA + "/web"}) {
			t.Errorf("%s's table: %v, want %s/web alone\n%s", name, got, teamA, page)
		}
		if resp, _ := getPage(t, v, base+"rollouts/"+teamB+"/web"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s opens %s/web: %d, want 403", name, teamB, resp.StatusCode)
		}
	}
	_, page := getPage(t, alice, base+"rollouts/"+teamA+"/web")
	if !strings.Contains(page, `id="action-Promote"`) || !strings.Contains(page, `id="events"`) || strings.Contains(page, `id="events-hidden"`) {
		t.Fatalf("alice's page of %s/web: want the actions and the events\n%s", teamA, page)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)[1]
	_, page = getPage(t, bob, base+"rollouts/"+teamA+"/web")
	if strings.Contains(page, `id="actions"`) || strings.Contains(page, `id="action-`) || !strings.Contains(page, `id="step"`) {
		t.Errorf("bob's page of %s/web: want the rollout without actions\n%s", teamA, page)
	}

	// A POST on team-b's Rollout, with alice's good CSRF token: refused,
	// and nothing reaches the Rollout.
	if resp := postForm(t, alice, base+"rollouts/"+teamB+"/web/commands/Abort", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice aborts %s/web: %d, want 403", teamB, resp.StatusCode)
	}
	other := &v1alpha1.Rollout{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: teamB, Name: "web"}, other); err != nil {
		t.Fatal(err)
	}
	if _, ok := other.Annotations[controller.CommandAnnotation]; ok || other.Status.LastCommand != nil || other.Status.Abort != nil {
		t.Fatalf("%s/web after a refused abort: annotations %v, last command %+v, abort %+v", teamB, other.Annotations, other.Status.LastCommand, other.Status.Abort)
	}

	// alice promotes her own.
	resp := postForm(t, alice, base+"rollouts/"+teamA+"/web/commands/Promote", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice promotes %s/web: %d", teamA, resp.StatusCode)
	}
	mine := &v1alpha1.Rollout{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: teamA, Name: "web"}, mine); err != nil {
		t.Fatal(err)
	}
	if lc := mine.Status.LastCommand; lc == nil || lc.Kind != v1alpha1.CommandPromote || lc.By != "system:serviceaccount:"+people+":alice" {
		t.Fatalf("status.lastCommand %+v: want alice's Promote", lc)
	}
	if _, page := getPage(t, alice, base+"rollouts/"+teamA+"/web"); !strings.Contains(page, `id="flash"`) || !strings.Contains(page, teamA+"/web: Promote:") {
		t.Errorf("no answer to alice's promote on her page")
	}
	if text := logs.String(); strings.Contains(text, "forbidden") {
		t.Errorf("the API server refused the controller something (crds/rbac/role.yaml lacks a permission):\n%s", text)
	}
}

// dashboardRollout has one pod and stops at a pause for promote.
func dashboardRollout(ns, name string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: name, Hosts: []string{name + "." + ns}, Port: 8080},
			Replicas: ptr.To[int32](1),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: name + ":v1"}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](20)}, {Pause: &v1alpha1.PauseStep{}},
			}}},
		},
	}
}

// playReplicaSets plays the ReplicaSet controller and the kubelet until
// ctx ends: every ReplicaSet's pods are available.
func playReplicaSets(ctx context.Context, c client.Client, namespaces ...string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, ns := range namespaces {
			_ = kubetest.MarkAvailable(ctx, c, ns)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func waitRollout(t *testing.T, c client.Client, ro *v1alpha1.Rollout, what string, cond func(*v1alpha1.Rollout) bool) {
	t.Helper()
	if !poll.Holds(30*time.Second, 50*time.Millisecond, func() bool {
		return c.Get(context.Background(), client.ObjectKeyFromObject(ro), ro) == nil && cond(ro)
	}) {
		t.Fatalf("%s/%s: timed out waiting for %s; phase %s: %s; conditions %+v", ro.Namespace, ro.Name, what, ro.Status.Phase, ro.Status.Message, ro.Status.Conditions)
	}
}

// saToken creates a service account and returns a token the API server
// issued for it, as `kubectl create token` does.
func saToken(t *testing.T, admin client.Client, ns, name string) string {
	t.Helper()
	cfg, _ := env.Start(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// loginAs logs in to the dashboard with token and returns a browser-like
// client holding the session: cookies kept, redirects not followed.
func loginAs(t *testing.T, base, token string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp := postForm(t, c, base+"login", url.Values{"token": {token}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	return c
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func getPage(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// tableRows are the table's rows of the namespaces given (others' tests
// have Rollouts too).
func tableRows(page string, namespaces ...string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`data-rollout="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		ns, _, _ := strings.Cut(m[1], "/")
		if slices.Contains(namespaces, ns) {
			out = append(out, m[1])
		}
	}
	return out
}
