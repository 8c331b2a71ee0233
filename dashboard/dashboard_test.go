package dashboard

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

func TestLoginRequiredAndSessionCookie(t *testing.T) {
	t.Parallel()
	srv := serve(t, newMemBackend(canaryRollout()), Options{})
	v := newViewer(t, srv)

	resp, _ := v.get("rollouts/shop/web")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "../../login?next=rollouts%2Fshop%2Fweb" {
		t.Fatalf("page without a session: %d to %q, want 303 to the login form, relative, coming back after", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := v.get("login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `name="token"`) {
		t.Fatalf("login form: %d\n%s", resp.StatusCode, page)
	}
	resp = v.post("login", url.Values{"token": {"not-a-token"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body(t, resp), "not one this server knows") {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	resp = v.post("login", url.Values{"token": {aliceSecret}, "next": {"rollouts/shop/web"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./rollouts/shop/web" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == cookieName {
			c = x
		}
	}
	switch {
	case c == nil:
		t.Fatal("no session cookie")
	case !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "":
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, no Path", c)
	}
	// Somewhere else than a page of the dashboard is not where a login
	// sends anyone.
	resp = v.post("login", url.Values{"token": {aliceSecret}, "next": {"//evil.example/x"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "./" {
		t.Fatalf("login with an outside next: sent to %q", loc)
	}
	resp, page = v.get("rollouts/shop/web")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "shop/web") {
		t.Fatalf("page after login: %d", resp.StatusCode)
	}

	// Logging out ends the session.
	resp = v.post("logout", url.Values{"csrf": {v.csrf()}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := v.get(""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("page after logout: %d, want a redirect to log in", resp.StatusCode)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	t.Parallel()
	d, err := New(newMemBackend(), Options{Tokens: testTokens(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptestTLS(t, d)
	v := newViewer(t, srv)
	v.base = srv.URL + "/"
	resp := v.post("login", url.Values{"token": {bobSecret}}, nil)
	for _, c := range resp.Cookies() {
		if c.Name == cookieName && !c.Secure {
			t.Fatalf("session cookie over TLS not Secure: %+v", c)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	srv := serve(t, newMemBackend(canaryRollout()), Options{})
	v := newViewer(t, srv)
	v.login(aliceSecret)
	for _, path := range []string{"", "rollouts/shop/web", "rollouts/shop/web/confirm/Promote", "login"} {
		resp, page := v.get(path)
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
		// No inline script, no inline style, no absolute link: the
		// page works under any prefix.
		for _, bad := range []*regexp.Regexp{regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`), regexp.MustCompile(`(?:href|src|action)="/`)} {
			if m := bad.FindString(page); m != "" {
				t.Errorf("%s: %q in the page", path, m)
			}
		}
		for _, m := range regexp.MustCompile(`<script[^>]*>[^<]*`).FindAllString(page, -1) {
			if !strings.Contains(m, " src=") || !strings.HasSuffix(m, ">") {
				t.Errorf("%s: inline script %q", path, m)
			}
		}
	}
}

// TestForgedPostsAreRefused: an action needs the session's CSRF token and
// must not come from another origin; a refused one runs nothing.
func TestForgedPostsAreRefused(t *testing.T) {
	t.Parallel()
	b := newMemBackend(canaryRollout())
	srv := serve(t, b, Options{})
	v := newViewer(t, srv)
	v.login(aliceSecret)
	csrf := v.csrf()
	path := "rollouts/shop/web/commands/Promote"
	for name, tc := range map[string]struct {
		form url.Values
		hdr  http.Header
	}{
		"no token":     {url.Values{}, nil},
		"wrong token":  {url.Values{"csrf": {"forged"}}, nil},
		"other origin": {url.Values{"csrf": {csrf}}, http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}},
	} {
		resp := v.post(path, tc.form, tc.hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, resp.StatusCode)
		}
		resp.Body.Close()
	}
	// Without a session at all.
	anon := newViewer(t, srv)
	if resp := anon.post(path, url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no session: %d, want 403", resp.StatusCode)
	}
	if got := b.sent(); len(got) != 0 {
		t.Fatalf("forged posts ran commands: %+v", got)
	}

	resp := v.post(path, url.Values{"csrf": {csrf}}, http.Header{"Origin": {srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "../../../../rollouts/shop/web" {
		t.Fatalf("command: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body(t, resp))
	}
	if got := b.sent(); len(got) != 1 || got[0].Kind != v1alpha1.CommandPromote || got[0].By != "alice" {
		t.Fatalf("commands sent: %+v, want one Promote by alice", got)
	}
	// The answer shows once, in the CLI's words.
	_, page := v.get("rollouts/shop/web")
	if !strings.Contains(page, `id="flash"`) || !strings.Contains(page, "shop/web: Promote: skipped step 1 (setWeight 20)") {
		t.Fatalf("no answer on the page:\n%s", page)
	}
	if _, page := v.get("rollouts/shop/web"); strings.Contains(page, `id="flash"`) {
		t.Fatal("the answer shows again")
	}
}

// TestReadRoleSeesNoActions: a read token sees the rollout but no action,
// and its posts are refused even with a good CSRF token.
func TestReadRoleSeesNoActions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		secret   string
		readOnly bool
	}{{"read role", bobSecret, false}, {"read-only dashboard", aliceSecret, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newMemBackend(canaryRollout())
			srv := serve(t, b, Options{ReadOnly: tc.readOnly})
			v := newViewer(t, srv)
			v.login(tc.secret)
			resp, page := v.get("rollouts/shop/web")
			if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="step">2/4`) {
				t.Fatalf("rollout page: %d\n%s", resp.StatusCode, page)
			}
			if strings.Contains(page, `id="actions"`) || strings.Contains(page, "action-Promote") {
				t.Fatal("actions offered to a viewer who may not act")
			}
			if resp, _ := v.get("rollouts/shop/web/confirm/Abort"); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("confirmation page: %d, want 403", resp.StatusCode)
			}
			resp = v.post("rollouts/shop/web/commands/Abort", url.Values{"csrf": {v.csrf()}}, nil)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("command: %d, want 403", resp.StatusCode)
			}
			if got := b.sent(); len(got) != 0 {
				t.Fatalf("commands ran: %+v", got)
			}
		})
	}
}

// TestActionsFollowTheEngine: the buttons are the engine's preview:
// allowed ones lead to a confirmation naming the rollout and what will
// happen; refused ones are disabled with the engine's reason.
func TestActionsFollowTheEngine(t *testing.T) {
	t.Parallel()
	srv := serve(t, newMemBackend(canaryRollout()), Options{})
	v := newViewer(t, srv)
	v.login(aliceSecret)
	_, page := v.get("rollouts/shop/web")
	for _, want := range []string{
		`<a class="button" id="action-Promote" href="../../rollouts/shop/web/confirm/Promote"`,
		`<button type="button" disabled id="action-Retry" title="refused: the rollout is not aborted"`,
		`<button type="button" disabled id="action-Resume"`,
		`<a class="button danger" id="action-Abort"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("no %s in the page", want)
		}
	}
	_, page = v.get("rollouts/shop/web/confirm/Promote")
	for _, want := range []string{"Promote shop/web?", `id="confirm-result">skipped step 2 (pause 1m0s)`, "sluice promote -n shop web", `action="../../../../rollouts/shop/web/commands/Promote"`, "alice"} {
		if !strings.Contains(page, want) {
			t.Errorf("confirmation without %q:\n%s", want, page)
		}
	}
	_, page = v.get("rollouts/shop/web/confirm/Retry")
	if strings.Contains(page, `id="confirm"`) || !strings.Contains(page, "refused: the rollout is not aborted") {
		t.Errorf("confirmation of a refused command offers it:\n%s", page)
	}
}

// TestUntrustedTextIsEscaped: a proxy's NACK, a commit message, a
// metric's name and its measurement message with markup render as text.
func TestUntrustedTextIsEscaped(t *testing.T) {
	t.Parallel()
	ro := canaryRollout()
	evil := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	ro.Status.Traffic.RejectedVersion, ro.Status.Traffic.Rejection = "p2", "node n1 rejected: "+evil
	ro.Detail.DataPlane.Rejected = []rolloutapi.Proxy{{Node: "n1" + evil, Error: evil, TypeURL: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"}}
	ro.Detail.Commit.Message = "subject " + evil + "\n\nbody " + evil
	ro.Detail.Commit.Author = evil
	ro.Status.Analysis = []v1alpha1.AnalysisRunStatus{{Name: "run-1", Kind: v1alpha1.AnalysisStepKind, Phase: v1alpha1.AnalysisRunning, Message: evil,
		Metrics: []v1alpha1.MetricSummary{{Name: "success-rate" + evil, Phase: v1alpha1.AnalysisRunning, LastValue: evil, Message: evil}}}}
	b := newMemBackend(ro)
	b.history["shop/web"] = []rolloutapi.Event{{Time: tNow, Type: "Warning", Reason: v1alpha1.ReasonNack, Message: evil}}
	srv := serve(t, b, Options{})
	v := newViewer(t, srv)
	v.login(aliceSecret)
	_, page := v.get("rollouts/shop/web")
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<img src=x") {
		t.Fatalf("markup from outside reached the page as markup:\n%s", page)
	}
	if n := strings.Count(page, `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`); n < 7 {
		t.Fatalf("escaped text shown %d times, want it in the NACK, rejection, commit, metric name, analysis and events", n)
	}
	if !strings.Contains(page, `success-rate&lt;script&gt;`) {
		t.Error("the metric's name is not shown as text")
	}
}

// TestStreamDeliversChanges: the rollout page's event stream sends the
// live part at once, then again when the backend signals a change: the
// page would not render again within the test for any other reason
// (Refresh 1h). BenchmarkStepLatency measures how soon.
func TestStreamDeliversChanges(t *testing.T) {
	t.Parallel()
	b := newMemBackend(canaryRollout())
	srv := serve(t, b, Options{Refresh: time.Hour})
	v := newViewer(t, srv)
	v.login(aliceSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.base+"rollouts/shop/web/events", nil)
	v.c.Timeout = 0
	resp, err := v.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := readEvents(resp)
	first := <-events
	if first.name != "update" || !strings.Contains(first.data, `id="step">2/4`) || !strings.Contains(first.data, `href="../../rollouts/shop/web/confirm/Promote"`) {
		t.Fatalf("first event: %s\n%s", first.name, first.data)
	}
	b.update("shop/web", func(r *rolloutapi.Rollout) {
		i := int32(2)
		r.Status.CurrentStepIndex, r.Status.StepDisplay, r.Status.Traffic.CanaryWeight = &i, "3/4", 50
	})
	select {
	case e := <-events:
		if !strings.Contains(e.data, `id="step">3/4`) || !strings.Contains(e.data, `id="weight">50%`) {
			t.Fatalf("update: %s", e.data)
		}
	case <-ctx.Done():
		t.Fatal("no update after the change")
	}
}

func TestStreamWithoutSessionAsksToLogIn(t *testing.T) {
	t.Parallel()
	srv := serve(t, newMemBackend(canaryRollout()), Options{})
	v := newViewer(t, srv)
	resp, page := v.get("events")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "event: login") || strings.Contains(page, "shop") {
		t.Fatalf("stream without a session: %d\n%s", resp.StatusCode, page)
	}
}

type sse struct{ name, data string }

func readEvents(resp *http.Response) <-chan sse {
	ch := make(chan sse, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		var cur sse
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.name != "" {
					cur.data = strings.Join(data, "\n")
					ch <- cur
				}
				cur, data = sse{}, nil
			case strings.HasPrefix(line, "event: "):
				cur.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[len("data: "):])
			}
		}
	}()
	return ch
}

func TestTableFiltersAndSorts(t *testing.T) {
	t.Parallel()
	a := canaryRollout()
	b := canaryRollout()
	b.Namespace, b.Name, b.Status.Phase, b.Status.CanaryRevision, b.Status.Traffic.CanaryWeight = "team-b", "api", v1alpha1.PhaseHealthy, "", 0
	c := canaryRollout()
	c.Name, c.Status.Phase, c.Status.Traffic.CanaryWeight = "cart", v1alpha1.PhaseDegraded, 5
	srv := serve(t, newMemBackend(a, b, c), Options{})
	v := newViewer(t, srv)
	v.login(bobSecret)
	rows := func(query string) []string {
		t.Helper()
		_, page := v.get(query)
		var out []string
		for _, m := range regexp.MustCompile(`data-rollout="([^"]+)"`).FindAllStringSubmatch(page, -1) {
			out = append(out, m[1])
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  string
	}{
		{"", "shop/cart shop/web team-b/api"},
		{"?namespace=shop", "shop/cart shop/web"},
		{"?phase=Healthy", "team-b/api"},
		{"?q=CAR", "shop/cart"},
		{"?q=v2", "shop/cart shop/web"},
		{"?sort=weight", "team-b/api shop/cart shop/web"},
		{"?sort=weight&desc=1", "shop/web shop/cart team-b/api"},
		{"?sort=namespace&desc=1&phase=Progressing", "shop/web"},
	} {
		if got := strings.Join(rows(tc.query), " "); got != tc.want {
			t.Errorf("%s: rows %s, want %s", tc.query, got, tc.want)
		}
	}
	_, page := v.get("?namespace=shop&sort=weight")
	for _, want := range []string{`data-events="events?namespace=shop&amp;sort=weight"`, `href="?desc=1&amp;namespace=shop&amp;sort=weight"`, `<td data-label="Step" class="step">2/4</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("table without %s", want)
		}
	}
}

func TestInsecureNoAuth(t *testing.T) {
	t.Parallel()
	b := newMemBackend(canaryRollout())
	srv := serve(t, b, Options{Tokens: []rolloutapi.Token{}, InsecureNoAuth: true})
	v := newViewer(t, srv)
	resp, _ := v.get("")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first visit: %d", resp.StatusCode)
	}
	resp, _ = v.get("login")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login without auth: %d, want straight in", resp.StatusCode)
	}
	resp = v.post("rollouts/shop/web/commands/Pause", url.Values{"csrf": {v.csrf()}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("command: %d", resp.StatusCode)
	}
	if got := b.sent(); len(got) != 1 || !strings.HasPrefix(got[0].By, "anonymous@") {
		t.Fatalf("commands: %+v", got)
	}
}

func TestUnknownRolloutAndPages(t *testing.T) {
	t.Parallel()
	srv := serve(t, newMemBackend(canaryRollout()), Options{})
	v := newViewer(t, srv)
	v.login(bobSecret)
	if resp, page := v.get("rollouts/shop/nope"); resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "not found") {
		t.Fatalf("unknown rollout: %d", resp.StatusCode)
	}
	if resp, _ := v.get("nowhere"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown page: %d", resp.StatusCode)
	}
	// The mount point without its slash leads to it, relatively.
	resp, err := v.c.Get(strings.TrimSuffix(v.base, "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "dashboard/" {
		t.Fatalf("/dashboard: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := v.get("assets/app.js")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(page, "EventSource") {
		t.Fatalf("app.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestStreamOutlivesListenerTimeouts: an event stream keeps going past the
// read and write timeouts of the listener it is served on (sluice run's
// are 30 s and 45 s).
func TestStreamOutlivesListenerTimeouts(t *testing.T) {
	t.Parallel()
	b := newMemBackend(canaryRollout())
	d, err := New(b, Options{Tokens: testTokens(t), Now: func() time.Time { return tNow }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(d)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 400*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	v := newViewer(t, srv)
	v.base = srv.URL + "/"
	v.login(bobSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.base+"events", nil)
	resp, err := v.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readEvents(resp)
	<-events
	time.Sleep(time.Second)
	b.update("shop/web", func(r *rolloutapi.Rollout) { r.Status.StepDisplay = "3/4" })
	select {
	case e, ok := <-events:
		if !ok || !strings.Contains(e.data, `class="step">3/4`) {
			t.Fatalf("after the timeouts: %v %q", ok, e.data)
		}
	case <-ctx.Done():
		t.Fatal("the stream ended with the listener's timeouts")
	}
}

// TestGitSyncShown: the Git card says whether the source's head is in
// force, and why not, with Git's text escaped.
func TestGitSyncShown(t *testing.T) {
	t.Parallel()
	evil := `<script>alert("x")</script>`
	for _, tc := range []struct {
		name string
		g    *v1alpha1.GitSyncStatus
		want string
	}{
		{"in sync", &v1alpha1.GitSyncStatus{HeadCommit: "abc", AppliedCommit: "abc"}, `<p id="git-sync">Head abc is in force.</p>`},
		{"rejected", &v1alpha1.GitSyncStatus{HeadCommit: "bad", AppliedCommit: "abc", Rejected: &v1alpha1.GitRejection{Commit: "bad", ProblemCount: 1,
			Problems: []v1alpha1.GitSourceProblem{{File: "r.yaml", Line: 3, Reason: evil}}}},
			`<p id="git-sync" class="error">Not in sync: head commit bad was rejected (r.yaml:3: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;); abc stays in force.</p>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := canaryRollout()
			ro.Status.GitSync = tc.g
			srv := serve(t, newMemBackend(ro), Options{})
			v := newViewer(t, srv)
			v.login(aliceSecret)
			if _, page := v.get("rollouts/shop/web"); !strings.Contains(page, tc.want) {
				t.Errorf("no %s in\n%s", tc.want, page)
			}
		})
	}
}
