package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const hookSecret = "It's a Secret to Everybody"

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	push := func(ref string) string { return `{"ref":"` + ref + `","after":"0123"}` }
	main := push("refs/heads/main")
	tests := []struct {
		name    string
		method  string
		headers map[string]string
		body    string
		code    int
		trigger bool
		reply   string
	}{
		{"github push", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(hookSecret, main)}, main, 202, true, "sync triggered for refs/heads/main"},
		{"github wrong signature", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("guess", main)}, main, 401, false, "invalid signature"},
		{"github signature of another body", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(hookSecret, main+" ")}, main, 401, false, "invalid signature"},
		{"github signature without prefix", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(hookSecret, main)}, main, 401, false, "invalid signature"},
		{"github signature not hex", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=zz"}, main, 401, false, "invalid signature"},
		{"missing signature", "POST", map[string]string{"X-GitHub-Event": "push"}, main, 401, false, "missing signature"},
		{"only the old SHA-1 signature", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=00"}, main, 401, false, "missing signature"},
		{"github ping", "POST", map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign(hookSecret, `{"zen":"x"}`)}, `{"zen":"x"}`, 200, false, "pong"},
		{"github other event", "POST", map[string]string{"X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + sign(hookSecret, `{}`)}, `{}`, 202, false, "not a push"},
		{"push to another branch", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(hookSecret, push("refs/heads/dev"))}, push("refs/heads/dev"), 200, false, "ignored: push to refs/heads/dev; this source follows refs/heads/main"},
		{"push of a tag", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(hookSecret, push("refs/tags/v1"))}, push("refs/tags/v1"), 200, false, "ignored"},
		{"gitlab push", "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hookSecret}, main, 202, true, "sync triggered"},
		{"gitlab wrong token", "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "It's a secret to everybody"}, main, 401, false, "invalid signature"},
		{"gitlab empty token", "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": ""}, main, 401, false, "invalid signature"},
		{"gitea push", "POST", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(hookSecret, main)}, main, 202, true, "sync triggered"},
		{"gitea wrong signature", "POST", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("x", main)}, main, 401, false, "invalid signature"},
		{"generic HMAC, no event header", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(hookSecret, main)}, main, 202, true, "sync triggered"},
		{"signed but not JSON", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + sign(hookSecret, "ref=main")}, "ref=main", 400, false, "no ref"},
		{"GET", "GET", nil, "", 405, false, "POST"},
		{"body too large", "POST", map[string]string{"X-Hub-Signature-256": "sha256=00"}, `{"ref":"` + strings.Repeat("x", 2048) + `"}`, 413, false, "larger than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newTestSyncer(t, Source{URL: "file:///nowhere", Branch: "main"})
			h, err := s.Webhook(WebhookOptions{Secret: []byte(hookSecret), MaxBodyBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tt.method, "/hook", strings.NewReader(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.reply) {
				t.Errorf("got %d %q; want %d containing %q", rec.Code, rec.Body.String(), tt.code, tt.reply)
			}
			triggered := len(s.trigger) == 1
			if triggered != tt.trigger {
				t.Errorf("triggered = %v, want %v", triggered, tt.trigger)
			}
		})
	}
}

func TestWebhookNeedsSecret(t *testing.T) {
	t.Parallel()
	s, _ := newTestSyncer(t, Source{URL: "file:///nowhere", Branch: "main"})
	if _, err := s.Webhook(WebhookOptions{}); KindOf(err) != KindConfig {
		t.Errorf("err = %v, want a config error", err)
	}
}

// TestWebhookTriggersImmediateSync runs a Syncer that would not poll for an
// hour: only the webhook can make it see the push.
func TestWebhookTriggersImmediateSync(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	srv := serveHTTP(t, r.Root)
	r.Push("one", map[string]string{"a.yaml": rollout("a", "v1")})
	s, _ := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main", Interval: time.Hour})
	h, err := s.Webhook(WebhookOptions{Secret: []byte(hookSecret)})
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(h)
	defer hook.Close()
	runSyncer(t, s)
	waitFor(t, s, "first sync", func(st State) bool { return st.Applied != nil })

	second := r.Push("two", map[string]string{"a.yaml": rollout("a", "v2")})
	body := `{"ref":"refs/heads/main","after":"` + second + `"}`
	req, _ := http.NewRequest(http.MethodPost, hook.URL, strings.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign(hookSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	waitFor(t, s, "the pushed commit", func(st State) bool { return appliedSHA(st) == second })
}

// A signed delivery seen again within the replay window is answered 200
// and triggers nothing; a new delivery id, or the same one after the
// window, triggers again. Unsigned requests never reach the memory.
func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	s, _ := newTestSyncer(t, Source{URL: "file:///nowhere", Branch: "main"})
	hh, err := s.Webhook(WebhookOptions{Secret: []byte(hookSecret), ReplayWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := hh.(*webhook)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	body := `{"ref":"refs/heads/main"}`
	send := func(delivery, secret string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/webhook", strings.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", "sha256="+sign(secret, body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	drain := func() int {
		n := 0
		for {
			select {
			case <-s.trigger:
				n++
			default:
				return n
			}
		}
	}
	for _, step := range []struct {
		delivery, secret string
		later            time.Duration
		code, triggers   int
	}{
		{"d-1", hookSecret, 0, 202, 1},
		{"d-1", hookSecret, 10 * time.Second, 200, 0},
		{"d-2", "guess", 0, 401, 0},
		{"d-2", hookSecret, 0, 202, 1},
		{"d-1", hookSecret, 2 * time.Minute, 202, 1},
	} {
		now = now.Add(step.later)
		rec := send(step.delivery, step.secret)
		if rec.Code != step.code || drain() != step.triggers {
			t.Fatalf("delivery %s: %d %q; want %d with %d trigger(s)", step.delivery, rec.Code, rec.Body.String(), step.code, step.triggers)
		}
	}
}
