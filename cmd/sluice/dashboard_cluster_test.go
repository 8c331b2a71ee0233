package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// checkClusterDashboard runs `sluice dashboard` against the cluster of
// TestVerbsAgainstCluster, with ns/checkout mid-canary at a pause, for
// three people with their own kubeconfigs: alice, who may do anything,
// gets the Rollout with its buttons; reader, who may only get and list
// Rollouts in ns, gets it without; mallory, who may do nothing, gets the
// API server's refusal. The page opens only with the printed link's key.
func checkClusterDashboard(t *testing.T, c client.Client, ns, alice, mallory string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollout-reader"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"sluice.dev"}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list"}},
	}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "reader"}}}
	for _, obj := range []client.Object{role, rb} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	reader := kubeconfigOf(t, envtest.User{Name: "reader"}, "")

	page := dashboardAs(t, alice, ns, "rollouts/"+ns+"/checkout")
	if !strings.Contains(page, `<span class="who">alice</span>`) || !strings.Contains(page, `id="action-Promote"`) || !strings.Contains(page, `id="step">2/5`) {
		t.Errorf("alice's page of %s/checkout: want her name, the step and the actions\n%s", ns, page)
	}
	page = dashboardAs(t, reader, ns, "rollouts/"+ns+"/checkout")
	if !strings.Contains(page, `id="step">2/5`) || strings.Contains(page, `id="action-`) || !strings.Contains(page, `id="events-hidden"`) {
		t.Errorf("reader's page of %s/checkout: want the rollout, no action, the events not shown\n%s", ns, page)
	}
	if page := dashboardAs(t, mallory, ns, ""); !strings.Contains(page, `User &#34;mallory&#34; cannot list`) {
		t.Errorf("mallory's table: want the API server's refusal\n%s", page)
	}
}

// dashboardAs runs `sluice dashboard --kubeconfig kubeconfig -n ns` until
// it has served path, opened with the link it printed, and returns the
// page. It checks that the page is closed to anyone without the link.
func dashboardAs(t *testing.T, kubeconfig, ns, path string) string {
	t.Helper()
	base, login, stop := startClusterDashboard(t, kubeconfig, ns)
	defer stop()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	// Without the key: the login form, which refuses anything else.
	if resp, err := c.Get(base + path); err != nil || !strings.Contains(readBody(t, resp), "paste its key") {
		t.Fatalf("without the key: %v", err)
	}
	if resp, err := c.PostForm(base+"login", url.Values{"token": {"sluice_guess"}}); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a guessed key: %v %v", resp.Status, err)
	}
	u := base + login
	if path != "" {
		u += "&next=" + url.QueryEscape(path)
	}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return readBody(t, resp)
}

// startClusterDashboard runs `sluice dashboard --kubeconfig kubeconfig -n
// ns` with args until stop, and returns its URL and the path of the link
// it printed.
func startClusterDashboard(t *testing.T, kubeconfig, ns string, args ...string) (base, login string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- runContext(ctx, append([]string{"dashboard", "--kubeconfig", kubeconfig, "-n", ns, "--listen", "127.0.0.1:0"}, args...), out, out)
	}()
	stop = func() {
		cancel()
		if c := <-code; c != exitOK {
			t.Errorf("sluice dashboard: exit %d\n%s", c, out.String())
		}
	}
	link := regexp.MustCompile(`at (http://127\.0\.0\.1:\d+/)(login\?key=\S+) `)
	var m []string
	for deadline := time.Now().Add(20 * time.Second); m == nil; time.Sleep(20 * time.Millisecond) {
		if m = link.FindStringSubmatch(out.String()); m == nil && time.Now().After(deadline) {
			stop()
			t.Fatalf("sluice dashboard printed no link:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "namespace "+ns) {
		t.Errorf("banner %q does not name the namespace", out.String())
	}
	return m[1], m[2], stop
}

// checkClusterDashboardLive opens alice's `sluice dashboard` on ns/checkout
// in headless Chromium, with pages read again only when the watch of the
// cluster's Rollouts says so (and every hour), runs change, which starts
// a canary that the controller takes to its first pause, and checks that
// the open page follows it there without a reload. Without Chromium
// (outside CI) it only runs change.
func checkClusterDashboardLive(t *testing.T, alice, ns string, change func()) {
	t.Helper()
	changed := false
	t.Run("live in the browser", func(t *testing.T) {
		newTab := browser(t)
		base, login, stop := startClusterDashboard(t, alice, ns, "--refresh", "1h")
		defer stop()
		ctx, cancel := context.WithTimeout(newTab(), 2*time.Minute)
		defer cancel()
		do(t, ctx, "open the link", chromedp.Navigate(base+login+"&next="+url.QueryEscape("rollouts/"+ns+"/checkout")),
			chromedp.WaitVisible(chromedp.ID("step")))
		waitText(t, ctx, "h1", "Healthy")
		markPage(t, ctx)
		changed = true
		change()
		waitText(t, ctx, "#step", "2/5")
		waitText(t, ctx, "#weight", "20%")
		checkNoReload(t, ctx)
	})
	if !changed {
		change()
	}
}

// syncBuffer is a bytes.Buffer for one writer and one reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
