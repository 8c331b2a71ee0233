package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rolloutapi"
)

// TestBehindAReverseProxy: under a prefix of a reverse proxy that strips
// it (https://ops.example.com/sluice/ to /dashboard/), the login, the
// pages, their assets, a command and the event stream work through the
// proxy's URLs alone, and the stream stays live.
func TestBehindAReverseProxy(t *testing.T) {
	t.Parallel()
	b := newMemBackend(canaryRollout())
	srv := serve(t, b, Options{Refresh: time.Hour})
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		rest, ok := strings.CutPrefix(r.In.URL.Path, "/sluice/")
		if !ok {
			rest = "no-such-page"
		}
		r.Out.URL.Path, r.Out.URL.RawPath = "/dashboard/"+rest, ""
	}})
	t.Cleanup(proxy.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	front := proxy.URL + "/sluice/"

	resp, err := c.PostForm(front+"login", url.Values{"token": {aliceSecret}})
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, resp)
	if resp.Request.URL.String() != front || !strings.Contains(page, `data-rollout="shop/web"`) {
		t.Fatalf("after login at %s:\n%s", resp.Request.URL, page)
	}
	resp, err = c.Get(front + "rollouts/shop/web")
	if err != nil {
		t.Fatal(err)
	}
	page = body(t, resp)
	// Every URL of the page, resolved against the proxy's, works.
	base := resp.Request.URL
	var refs []string
	for _, attr := range []string{`src="`, `href="`, `data-events="`} {
		for _, part := range strings.Split(page, attr)[1:] {
			refs = append(refs, part[:strings.IndexByte(part, '"')])
		}
	}
	var events, confirm string
	for _, ref := range refs {
		if strings.HasPrefix(ref, "https://") {
			continue // a link to the forge's page of a commit
		}
		u, err := base.Parse(strings.ReplaceAll(ref, "&amp;", "&"))
		if err != nil {
			t.Fatalf("%q: %v", ref, err)
		}
		if !strings.HasPrefix(u.String(), front) {
			t.Errorf("%q leads to %s, outside the proxy's prefix", ref, u)
		}
		switch {
		case strings.HasSuffix(u.Path, "/events"):
			events = u.String()
			continue
		case strings.HasSuffix(u.Path, "/confirm/Promote"):
			confirm = u.String()
		}
		resp, err := c.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		if _ = body(t, resp); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s through the proxy: %s", u, resp.Status)
		}
	}
	if events == "" || confirm == "" {
		t.Fatalf("no event stream (%q) or promote (%q) on the page:\n%s", events, confirm, page)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, events, nil)
	stream, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	updates := readEvents(stream)
	if first := <-updates; !strings.Contains(first.data, `id="step">2/4`) {
		t.Fatalf("first event through the proxy: %s %s", first.name, first.data)
	}

	// Promote through the proxy: the confirmation's form posts back
	// under the prefix, and the stream shows the step that follows.
	resp, err = c.Get(confirm)
	if err != nil {
		t.Fatal(err)
	}
	form := body(t, resp)
	// The confirmation's own form, not the header's logout.
	_, form, _ = strings.Cut(form, `id="confirm-result"`)
	csrf := between(form, `name="csrf" value="`, `"`)
	action := between(form, `action="`, `"`)
	to, err := resp.Request.URL.Parse(action)
	if err != nil || csrf == "" || !strings.HasPrefix(to.String(), front) {
		t.Fatalf("confirmation form: action %q (%v), csrf %q:\n%s", action, err, csrf, form)
	}
	resp, err = c.PostForm(to.String(), url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	if page := body(t, resp); resp.Request.URL.String() != front+"rollouts/shop/web" || !strings.Contains(page, "shop/web: Promote") {
		t.Fatalf("after promote at %s:\n%s", resp.Request.URL, page)
	}
	if sent := b.sent(); len(sent) != 1 || sent[0].Kind != "Promote" || sent[0].By != "alice" {
		t.Fatalf("commands sent: %+v, want alice's Promote", sent)
	}
	// The engine takes the rollout on; the open stream shows it.
	b.update("shop/web", func(r *rolloutapi.Rollout) {
		i := int32(2)
		r.Status.CurrentStepIndex, r.Status.StepDisplay = &i, "3/4"
	})
	select {
	case e := <-updates:
		if !strings.Contains(e.data, `id="step">3/4`) {
			t.Fatalf("update through the proxy: %s", e.data)
		}
	case <-ctx.Done():
		t.Fatal("no update through the proxy after the command")
	}
}

// between is the text of s after the first from, up to to.
func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// BenchmarkStepLatency measures how long a step change takes from the
// backend's signal to the open page's event stream, in the ways a page
// is served: by `sluice run` itself (its runner is the Watcher), and by
// `sluice dashboard --server` on a workstation, where the change travels
// the server's /api/v1/watch stream and the API first (rolloutapi.Live
// over a Client). Refresh is an hour, so only the signal delivers. The
// issue's goal is under a second on an open page.
func BenchmarkStepLatency(b *testing.B) {
	for _, mode := range []string{"sluice-run", "sluice-dashboard-server"} {
		b.Run(mode, func(b *testing.B) {
			mb := newMemBackend(canaryRollout())
			var backend rolloutapi.Backend = mb
			tok, err := rolloutapi.ParseToken("bench", "alice", rolloutapi.RoleOperate, rolloutapi.HashToken(aliceSecret))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if mode == "sluice-dashboard-server" {
				api := httptest.NewServer(rolloutapi.NewHandler(mb, rolloutapi.HandlerOptions{Tokens: []rolloutapi.Token{tok}}))
				// The Live's stream ends with ctx, before the server closes.
				defer func() { cancel(); api.Close() }()
				c := &rolloutapi.Client{BaseURL: api.URL, Token: aliceSecret}
				live := rolloutapi.NewLive(ctx, c, c, time.Second)
				for deadline := time.Now().Add(30 * time.Second); !live.Following(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("the local dashboard never followed the server")
					}
				}
				backend = live
			}
			d, err := New(backend, Options{Tokens: []rolloutapi.Token{tok}, Refresh: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(d)
			defer srv.Close()
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar}
			resp, err := c.PostForm(srv.URL+"/login", url.Values{"token": {aliceSecret}})
			if err != nil {
				b.Fatal(err)
			}
			_ = resp.Body.Close()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/rollouts/shop/web/events", nil)
			stream, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			defer stream.Body.Close()
			updates := readEvents(stream)
			if first := <-updates; first.name != "update" {
				b.Fatalf("first event %q", first.name)
			}
			var total, worst time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				// Past the streams' gaps, so each change is a lone one.
				time.Sleep(200 * time.Millisecond)
				// Steps 3, 4, 2, 3, ...: each differs from the one before
				// (the rollout starts at 2/4), so the page changes.
				step := int32((i+1)%3 + 1)
				display := fmt.Sprintf("%d/4", step+1)
				b.StartTimer()
				start := time.Now()
				mb.update("shop/web", func(r *rolloutapi.Rollout) {
					r.Status.CurrentStepIndex = &step
					r.Status.StepDisplay = display
				})
				for {
					select {
					case e, ok := <-updates:
						if !ok {
							b.Fatal("the stream ended")
						}
						if !strings.Contains(e.data, `id="step">`+display) {
							continue
						}
					case <-time.After(time.Minute): // a guard against a hang
						b.Fatalf("step %s never reached the page", display)
					}
					break
				}
				d := time.Since(start)
				total += d
				worst = max(worst, d)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/step")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
		})
	}
}
