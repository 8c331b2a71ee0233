package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// chromiumPath is the headless browser of the browser tests: Debian's
// chromium (.ci/run installs it), or $SLUICE_CHROMIUM. Missing, the test
// skips, or fails under CI=true, like every test that needs a binary.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SLUICE_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		testbin.SkipOrFail(t, p+" is missing: apt-get install chromium (or set SLUICE_CHROMIUM)")
	}
	return p
}

// browser starts headless Chromium for the test, with the flags this
// closed network needs (no background networking), and returns a tab.
// Each tab of the returned function has a browser context of its own
// (its own cookies).
func browser(t *testing.T) func() context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	first, cancelFirst := chromedp.NewContext(alloc)
	if err := chromedp.Do(first); err != nil {
		cancelFirst()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancelFirst()
		cancelAlloc()
	})
	return func() context.Context {
		ctx, cancel := chromedp.NewContext(first, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		return ctx
	}
}

const browserRollout = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  backend: {version: %s, endpoints: [%q]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {duration: 2s}
      - analysis:
          templates: [{name: success-rate}]
      - setWeight: 50
      - pause: {}
---
apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  metrics:
  - name: success-rate
    interval: 1s
    count: 4
    successCondition: result[0] >= 0.95
    failureCondition: result[0] < 0.9
    provider:
      prometheus:
        name: default
        query: vector(0.97)
`

// browserRatings is a second Rollout, whose plan a proxy rejects.
const browserRatings = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: ratings
spec:
  service: {name: ratings, hosts: [ratings], port: 9080}
  backend: {version: v1, endpoints: [%q]}
  strategy:
    canary:
      steps:
      - setWeight: 50
`

const browserConfig = `git:
  url: %s
  branch: main
  interval: 1s
stateDir: %s
prometheus:
  address: %s
xds:
  address: %s
http:
  address: %s
  metricsAddress: %s
  tokens:
  - {name: alice, role: operate, sha256: %s}
  - {name: bob, role: read, sha256: %s}
`

// TestDashboardInBrowser runs the real `sluice run` with a real proxyless
// gRPC client on its xDS and a real Prometheus behind its analysis, and
// drives the dashboard in headless Chromium: the table shows the rollout
// and follows it live; the rollout page follows the canary through its
// steps without a reload, its analysis chart gaining points; promote from
// the page takes it on and is recorded as alice's; a proxy's NACK with
// markup in it shows as text; a read token's viewer gets no action, and a
// forged POST from the page is refused.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	newTab := browser(t)
	bin := sluiceBinary(t)
	prom, err := promtest.Start(testbin.Path(t, "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	v1, v2 := xdstest.Backend(t, "127.0.0.1", "v1"), xdstest.Backend(t, "127.0.0.1", "v2")
	repo := gittest.New(t)
	repo.Push("reviews v1", map[string]string{"reviews.yaml": fmt.Sprintf(browserRollout, "v1", v1)})

	const aliceToken, bobToken = "alice-browser-token", "bob-browser-token"
	dir := t.TempDir()
	httpAddr, xdsAddr := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, browserConfig, repo.URL(), filepath.Join(dir, "state"), prom.URL, xdsAddr, httpAddr, freePort(t),
		rolloutapi.HashToken(aliceToken), rolloutapi.HashToken(bobToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })

	api := &rolloutapi.Client{BaseURL: "http://" + httpAddr, Token: aliceToken}
	waitRollout(t, api, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	client, _ := xdstest.Client(t, xdsAddr, "browser-test-client", "reviews")
	if got := xdstest.Calls(t, client, 20); got["v1"] != 20 {
		t.Fatalf("before the rollout: %v, want all on v1", got)
	}
	base := "http://" + httpAddr + "/dashboard/"

	// Alice logs in; the table shows the rollout.
	alice := newTab()
	ctx, cancel := context.WithTimeout(alice, 3*time.Minute)
	defer cancel()
	do(t, ctx, "log in",
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), aliceToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-rollout="default/reviews"]`)),
	)
	if loc := get(t, ctx, chromedp.Location()); loc != base {
		t.Fatalf("after login at %s, want %s", loc, base)
	}
	waitText(t, ctx, `tr[data-rollout="default/reviews"] td[data-label="Phase"]`, "Healthy")
	// The table follows the push without a reload.
	markPage(t, ctx)
	repo.Push("reviews v2: the new ranking", map[string]string{"reviews.yaml": fmt.Sprintf(browserRollout, "v2", v2)})
	waitText(t, ctx, `tr[data-rollout="default/reviews"] td[data-label="Canary"]`, "v2")
	checkNoReload(t, ctx)
	checkPhoneDark(t, ctx, "the table")
	screenshot(t, ctx, "dashboard-table")

	// The rollout page follows the canary through its steps live.
	do(t, ctx, "open the rollout", clickLive(`tr[data-rollout="default/reviews"] td[data-label="Name"] a`),
		chromedp.WaitVisible(chromedp.ID("step")))
	markPage(t, ctx)
	var steps []string
	var points []int
	deadline := time.Now().Add(90 * time.Second)
	for {
		step := textOf(t, ctx, "#step")
		message := textOf(t, ctx, "#message")
		n := get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.metric-chart .point').length`))
		if len(steps) == 0 || steps[len(steps)-1] != step {
			steps = append(steps, step)
		}
		if len(points) == 0 || points[len(points)-1] != n {
			points = append(points, n)
		}
		if strings.Contains(message, "waiting for promote") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never reached the pause for promote; steps seen %v, last message %q", steps, message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkNoReload(t, ctx)
	checkPhoneDark(t, ctx, "the rollout page")
	screenshot(t, ctx, "dashboard-rollout")
	t.Logf("steps seen on the page: %v; chart points: %v", steps, points)
	if len(steps) < 3 {
		t.Errorf("the page showed steps %v: want it to follow the canary step by step", steps)
	}
	if len(points) < 3 || points[len(points)-1] < 4 {
		t.Errorf("the chart's points went %v: want it to gain them one by one, to the 4 measurements", points)
	}
	proxies := textOf(t, ctx, "#proxies")
	weight := textOf(t, ctx, "#weight")
	if !strings.Contains(proxies, "1 of 1 proxies hold this plan") || weight != "50%" {
		t.Errorf("data plane %q, weight %q: want the client's ACK and 50%%", proxies, weight)
	}
	if acks := textOf(t, ctx, "#acks"); !strings.Contains(acks, "browser-test-client") {
		t.Errorf("ACKs listed: %q, want the client", acks)
	}
	if subject := textOf(t, ctx, "#commit-subject"); subject != "reviews v2: the new ranking" {
		t.Errorf("commit subject %q", subject)
	}

	// `sluice dashboard --server` shows the same server on a workstation,
	// live by the server's event stream: its page would not read again
	// within the test for any other reason (--refresh 1h).
	localBase := localDashboard(t, bin, "http://"+httpAddr, aliceToken)
	local := newTab()
	lctx, lcancel := context.WithTimeout(local, 3*time.Minute)
	defer lcancel()
	do(t, lctx, "log in to sluice dashboard",
		chromedp.Navigate(localBase+"rollouts/default/reviews"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), aliceToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("step")),
	)
	waitText(t, lctx, "#message", "waiting for promote")
	markPage(t, lctx)

	// Promote from the page.
	do(t, ctx, "promote", clickLive("#action-Promote"), chromedp.WaitVisible(chromedp.ID("confirm")))
	if result := get(t, ctx, chromedp.Text(chromedp.CSS("h1"))); result != "Promote default/reviews?" {
		t.Errorf("confirmation says %q", result)
	}
	watchFor(t, lctx, "#last-command", "Promote by alice")
	clicked := time.Now()
	do(t, ctx, "confirm", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash")))
	if flash := get(t, ctx, chromedp.Text(chromedp.ID("flash"))); !strings.HasPrefix(flash, "default/reviews: Promote: skipped step 5") {
		t.Errorf("after promote: %q", flash)
	}
	ro := waitRollout(t, api, "v2 promoted", func(ro rolloutapi.Rollout) bool {
		return ro.Status.StableRevision == "v2" && ro.Status.CanaryRevision == ""
	})
	waitText(t, ctx, `#last-command`, "Promote by alice")
	if lc := ro.Status.LastCommand; lc == nil || lc.Kind != v1alpha1.CommandPromote || lc.By != "alice" {
		t.Errorf("last command %+v: want Promote by alice", lc)
	}
	hist, err := api.History(context.Background(), "default", "reviews", 200)
	if err != nil {
		t.Fatal(err)
	}
	if !containsEvent(hist, "alice ran Promote") {
		t.Errorf("no 'alice ran Promote' in the history: %+v", hist)
	}
	waitFor(t, 30*time.Second, "all RPCs on v2", func() bool { return xdstest.Calls(t, client, 20)["v2"] == 20 })
	// The workstation's page saw the promotion without a reload.
	waitText(t, lctx, "#last-command", "Promote by alice")
	waitText(t, lctx, "#step", "-")
	checkNoReload(t, lctx)
	t.Logf("the workstation's page showed the promote %v after the click on the server's page (the command's own time included)", seenAfter(t, lctx, clicked))

	// The next version's canary, aborted from the page while the
	// workstation's page follows it step by step.
	repo.Push("reviews v3", map[string]string{"reviews.yaml": fmt.Sprintf(browserRollout, "v3", xdstest.Backend(t, "127.0.0.1", "v3"))})
	waitText(t, lctx, "#step", "/6")
	waitText(t, ctx, "#step", "/6")
	do(t, ctx, "abort", clickLive("#action-Abort"), chromedp.WaitVisible(chromedp.ID("confirm")))
	if result := get(t, ctx, chromedp.Text(chromedp.CSS("h1"))); result != "Abort default/reviews?" {
		t.Errorf("confirmation says %q", result)
	}
	watchFor(t, lctx, "#last-command", "Abort by alice")
	clicked = time.Now()
	do(t, ctx, "confirm abort", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash")))
	if flash := get(t, ctx, chromedp.Text(chromedp.ID("flash"))); !strings.HasPrefix(flash, "default/reviews: Abort: aborted") {
		t.Errorf("after abort: %q", flash)
	}
	ro = waitRollout(t, api, "v3 aborted", func(ro rolloutapi.Rollout) bool { return ro.Status.Abort != nil })
	if lc := ro.Status.LastCommand; lc == nil || lc.Kind != v1alpha1.CommandAbort || lc.By != "alice" {
		t.Errorf("last command %+v: want Abort by alice", lc)
	}
	waitText(t, lctx, "#last-command", "Abort by alice")
	checkNoReload(t, lctx)
	t.Logf("the workstation's page showed the abort %v after the click on the server's page (the command's own time included)", seenAfter(t, lctx, clicked))
	if hist, err := api.History(context.Background(), "default", "reviews", 200); err != nil || !containsEvent(hist, "alice ran Abort") {
		t.Errorf("no 'alice ran Abort' in the history (%v): %+v", err, hist)
	}
	waitFor(t, 30*time.Second, "all RPCs back on v2", func() bool { return xdstest.Calls(t, client, 20)["v2"] == 20 })

	// A proxy NACKs another Rollout's plan with markup in its error and
	// its node id: the page shows the text, and no element of it.
	repo.Push("ratings", map[string]string{"ratings.yaml": fmt.Sprintf(browserRatings, xdstest.Backend(t, "127.0.0.1", "ratings-v1"))})
	waitFor(t, 30*time.Second, "ratings in the API", func() bool {
		_, err := api.Get(context.Background(), "default", "ratings")
		return err == nil
	})
	nackingNode(t, xdsAddr, `nacker<b>bold</b>`, "ratings", `<script>alert("nack")</script> route rejected`)
	do(t, ctx, "open ratings", chromedp.Navigate(base+"rollouts/default/ratings"))
	waitText(t, ctx, "#nacks", `<script>alert("nack")</script> route rejected`)
	waitText(t, ctx, "#nacks", `nacker<b>bold</b>`)
	if n := get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#live script, #live b').length`)); n != 0 {
		t.Errorf("the NACK's markup became %d elements of the page", n)
	}

	// Bob, with a read token, sees the rollout and no action; a POST
	// from his page without the form's token is refused.
	bob := newTab()
	bctx, bcancel := context.WithTimeout(bob, time.Minute)
	defer bcancel()
	do(t, bctx, "bob logs in",
		chromedp.Navigate(base+"rollouts/default/reviews"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), bobToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("step")),
	)
	if nActions := get(t, bctx, chromedp.Evaluate[int](`document.querySelectorAll('#actions, [id^="action-"]').length`)); nActions != 0 {
		t.Errorf("bob's page has %d actions", nActions)
	}
	status := get(t, bctx, chromedp.Evaluate[int](`fetch('reviews/commands/Abort', {method: 'POST', body: new URLSearchParams({csrf: 'forged'})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden {
		t.Errorf("forged POST answered %d, want 403", status)
	}
}

// localDashboard runs `sluice dashboard --server server` with token, its
// pages read again only when the server's event stream says so (and
// every hour), and returns its URL once it answers.
func localDashboard(t *testing.T, bin, server, token string) string {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(bin, "dashboard", "--server", server, "--listen", addr, "--refresh", "1h")
	cmd.Env = append(os.Environ(), "SLUICE_TOKEN="+token)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	base := "http://" + addr + "/"
	waitFor(t, 30*time.Second, "sluice dashboard to answer", func() bool {
		resp, err := http.Get(base + "login")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action for its value.
func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// screenshot writes the whole page as name.png, and as it looks at phone
// width in dark mode as name-phone-dark.png, into $SLUICE_SCREENSHOTS when
// it is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SLUICE_SCREENSHOTS")
	if dir == "" {
		return
	}
	// At the browser's desktop width: an earlier phone-width shot's
	// override is gone.
	do(t, ctx, "desktop width", chromedp.EmulateViewport(1280, 900))
	png := get(t, ctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	// And at phone width, in dark mode.
	dark := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, dark); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	png = get(t, ctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+"-phone-dark.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "desktop width", chromedp.EmulateReset())
}

// checkPhoneDark looks at the page at phone width in dark mode: nothing
// is wider than the screen (no sideways scrolling), and the page is dark.
func checkPhoneDark(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	dark := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, dark); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	got := get(t, ctx, chromedp.Evaluate[[]float64](`(() => {
		const bg = getComputedStyle(document.body).backgroundColor.match(/[0-9.]+/g).map(Number);
		const fg = getComputedStyle(document.body).color.match(/[0-9.]+/g).map(Number);
		const lum = c => (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
		return [document.documentElement.scrollWidth, window.innerWidth, lum(bg), lum(fg)];
	})()`))
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "desktop width", chromedp.EmulateReset())
	if len(got) != 4 {
		t.Fatalf("%s at phone width: %v", what, got)
	}
	if got[0] > got[1] {
		t.Errorf("%s at phone width: %v px wide on a %v px screen", what, got[0], got[1])
	}
	if got[2] > 0.3 || got[3] < 0.6 {
		t.Errorf("%s in dark mode: background luminance %.2f, text %.2f: want light text on a dark page", what, got[2], got[3])
	}
}

// watchFor notes in the page the time at which the element sel first
// contains want, for seenAfter: a figure for the log, not a test.
func watchFor(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	do(t, ctx, "watch the page", chromedp.Evaluate[chromedp.Void](`(() => {
		window.sluiceSeenAt = 0;
		const seen = () => {
			if (!window.sluiceSeenAt && ((document.querySelector(`+strconv.Quote(sel)+`) || {}).textContent || "").includes(`+strconv.Quote(want)+`)) {
				window.sluiceSeenAt = Date.now();
			}
		};
		new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
	})()`))
}

// seenAfter is how long after since watchFor's text appeared.
func seenAfter(t *testing.T, ctx context.Context, since time.Time) time.Duration {
	t.Helper()
	at := get(t, ctx, chromedp.Evaluate[int64](`window.sluiceSeenAt`))
	return time.UnixMilli(at).Sub(since).Round(time.Millisecond)
}

// clickLive clicks the element sel selects in one evaluation: live
// updates replace the elements of a page, so a node that one protocol
// call found may be gone at the next.
func clickLive(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`document.querySelector(` + strconv.Quote(sel) + `).click()`)
}

// markPage marks the page's window; checkNoReload fails the test if the
// mark is gone, that is if the page was loaded again.
func markPage(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.sluiceTestMark = true`))
}

func checkNoReload(t *testing.T, ctx context.Context) {
	t.Helper()
	if !get(t, ctx, chromedp.Evaluate[bool](`window.sluiceTestMark === true`)) {
		t.Fatal("the page was reloaded: live updates should change it in place")
	}
}

// textOf is the text of the first element sel selects, "" when none
// does. It reads in one evaluation: the live updates replace elements
// between two protocol calls.
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[string](`(document.querySelector(`+strconv.Quote(sel)+`) || {}).textContent || ""`))
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = textOf(t, ctx, sel)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s says %q, never %q", sel, got, want)
		}
	}
}

// waitRollout waits up to a minute for default/reviews to meet cond.
func waitRollout(t *testing.T, c *rolloutapi.Client, what string, cond func(rolloutapi.Rollout) bool) rolloutapi.Rollout {
	t.Helper()
	var last rolloutapi.Rollout
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ro, err := c.Get(context.Background(), "default", "reviews")
		if err == nil {
			if last = ro; cond(ro) {
				return ro
			}
		}
	}
	t.Fatalf("timed out waiting for %s; last: %s %s", what, last.Status.Phase, last.Status.Message)
	return last
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func containsEvent(evs []rolloutapi.Event, msg string) bool {
	for _, e := range evs {
		if strings.Contains(e.Message, msg) {
			return true
		}
	}
	return false
}

// nackingNode opens an ADS stream as node id, subscribes to host's
// listener as a proxyless gRPC client would, and rejects every response
// with msg, until the test ends. It returns once it has rejected one.
func nackingNode(t *testing.T, addr, id, host, msg string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: id, Cluster: "test", UserAgentName: "gRPC Go"},
		TypeUrl: resourcev3.ListenerType, ResourceNames: []string{host}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	nacked := make(chan struct{})
	go func() {
		for first := true; ; first = false {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			// The version stays the one before: none was ever applied.
			if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: []string{host},
				ResponseNonce: resp.GetNonce(), ErrorDetail: &statuspb.Status{Code: 3, Message: msg}}); err != nil {
				return
			}
			if first {
				close(nacked)
			}
		}
	}()
	select {
	case <-nacked:
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s was sent nothing to reject", id)
	}
}
