package gitsync

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-logr/logr"
)

// WebhookOptions configure the push webhook.
type WebhookOptions struct {
	// Secret is the webhook secret configured at the Git host: the HMAC
	// key for GitHub, Gitea and generic senders, the token for GitLab.
	// Required.
	Secret []byte
	// MaxBodyBytes bounds a request body. Default 1 MiB, which holds a
	// push event of several hundred commits.
	MaxBodyBytes int64
	// ReplayWindow is how long a delivery id (X-GitHub-Delivery,
	// X-Gitea-Delivery, X-Gitlab-Event-UUID, ...) is remembered: a signed
	// delivery seen again within it is answered 200 and triggers nothing.
	// Default 1h.
	ReplayWindow time.Duration
}

// maxDeliveries bounds the delivery ids remembered; the oldest go first.
const maxDeliveries = 4096

// DefaultWebhookMaxBody is the default bound on a webhook request body.
const DefaultWebhookMaxBody = 1 << 20

// Webhook returns an http.Handler for push events from GitHub, GitLab,
// Gitea (and Forgejo, Gogs) or any sender that signs its body like GitHub.
// A verified push to the source's branch (or tag) triggers an immediate
// sync; anything else is answered and ignored.
//
// Authentication, in the order tried:
//   - X-Gitlab-Token: the secret itself (GitLab does not sign bodies);
//   - X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256 of the body
//     (GitHub, and Gitea and generic senders);
//   - X-Gitea-Signature, X-Forgejo-Signature, X-Gogs-Signature: hex
//     HMAC-SHA256 of the body.
//
// Comparisons are constant-time. A request with none of these, or a wrong
// one, gets 401 and triggers nothing.
func (s *Syncer) Webhook(opts WebhookOptions) (http.Handler, error) {
	return newWebhook(s.src, s.log, func(context.Context) error { s.Trigger(); return nil }, opts)
}

// NewWebhook is Webhook for a source whose Syncer runs elsewhere (in
// controller mode, on the leader while a follower gets the push): a
// verified push to src's branch or tag calls trigger, whose error is
// answered 500. src is checked as New checks it.
func NewWebhook(src Source, log logr.Logger, trigger func(context.Context) error, opts WebhookOptions) (http.Handler, error) {
	src, err := src.withDefaults()
	if err != nil {
		return nil, err
	}
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	return newWebhook(src, log.WithValues("source", src.Name), trigger, opts)
}

func newWebhook(src Source, log logr.Logger, trigger func(context.Context) error, opts WebhookOptions) (http.Handler, error) {
	if len(opts.Secret) == 0 {
		return nil, newError(KindConfig, "configure webhook", errors.New("a secret is required: unsigned webhooks would let anyone trigger fetches"))
	}
	opts.MaxBodyBytes = cmp.Or(opts.MaxBodyBytes, DefaultWebhookMaxBody)
	opts.ReplayWindow = cmp.Or(opts.ReplayWindow, time.Hour)
	return &webhook{src: src, log: log, trigger: trigger, opts: opts, now: time.Now, seen: map[string]time.Time{}}, nil
}

type webhook struct {
	src     Source
	log     logr.Logger
	trigger func(context.Context) error
	opts    WebhookOptions
	now     func() time.Time

	mu sync.Mutex
	// seen holds recent delivery ids, order the same ids oldest first.
	seen  map[string]time.Time
	order []string
}

// replayed records a delivery id and reports whether it was seen within
// the replay window. Only verified requests get here, so an attacker
// without the secret cannot fill the memory.
func (h *webhook) replayed(id string) bool {
	if id == "" {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for len(h.order) > 0 && (len(h.order) >= maxDeliveries || now.Sub(h.seen[h.order[0]]) > h.opts.ReplayWindow) {
		delete(h.seen, h.order[0])
		h.order = h.order[1:]
	}
	if _, ok := h.seen[id]; ok {
		return true
	}
	h.seen[id] = now
	h.order = append(h.order, id)
	return false
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(code int, format string, args ...any) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintf(w, format+"\n", args...)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(http.StatusMethodNotAllowed, "webhooks are POST requests")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(http.StatusRequestEntityTooLarge, "body larger than %d bytes", h.opts.MaxBodyBytes)
			return
		}
		reply(http.StatusBadRequest, "cannot read body")
		return
	}
	provider, err := h.verify(r.Header, body)
	log := h.log.WithValues("provider", provider, "remote", r.RemoteAddr)
	if err != nil {
		log.Info("webhook refused", "reason", err.Error())
		reply(http.StatusUnauthorized, "%v", err)
		return
	}
	delivery := firstHeader(r.Header, "X-GitHub-Delivery", "X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery", "X-Gitlab-Event-UUID")
	if len(delivery) > 128 {
		delivery = delivery[:128]
	}
	if h.replayed(delivery) {
		log.Info("webhook: delivery seen before, ignored", "delivery", delivery)
		reply(http.StatusOK, "ignored: delivery %q was already handled", delivery)
		return
	}
	event := firstHeader(r.Header, "X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event")
	switch strings.ToLower(event) {
	case "ping":
		reply(http.StatusOK, "pong")
		return
	case "", "push", "push hook", "tag push hook", "tag_push":
	default:
		reply(http.StatusAccepted, "ignored: event %q is not a push", event)
		return
	}
	var push struct {
		Ref string `json:"ref"`
	}
	if err := json.Unmarshal(body, &push); err != nil || push.Ref == "" {
		reply(http.StatusBadRequest, "not a push event: no ref in the body")
		return
	}
	want := h.watchedRef()
	if want == "" {
		reply(http.StatusOK, "ignored: this source follows fixed commit %s", h.src.Commit)
		return
	}
	if push.Ref != want {
		log.V(1).Info("webhook for another ref ignored", "ref", push.Ref, "watching", want)
		reply(http.StatusOK, "ignored: push to %s; this source follows %s", push.Ref, want)
		return
	}
	log.Info("webhook: push received, syncing now", "ref", push.Ref)
	if err := h.trigger(r.Context()); err != nil {
		log.Error(err, "webhook: cannot trigger a sync", "ref", push.Ref)
		reply(http.StatusInternalServerError, "cannot trigger a sync; the next poll will find the commit")
		return
	}
	reply(http.StatusAccepted, "sync triggered for %s", push.Ref)
}

func (h *webhook) watchedRef() string {
	switch {
	case h.src.Branch != "":
		return plumbing.NewBranchReferenceName(h.src.Branch).String()
	case h.src.Tag != "":
		return plumbing.NewTagReferenceName(h.src.Tag).String()
	}
	return ""
}

var (
	errUnsigned     = errors.New("missing signature: send X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token")
	errBadSignature = errors.New("invalid signature")
)

// verify checks the request's signature or token and names the provider.
func (h *webhook) verify(hdr http.Header, body []byte) (string, error) {
	if tok, ok := hdr["X-Gitlab-Token"]; ok {
		// Hash both sides so the comparison takes the same time whatever
		// the lengths.
		got, want := sha256.Sum256([]byte(strings.Join(tok, ""))), sha256.Sum256(h.opts.Secret)
		if !hmac.Equal(got[:], want[:]) {
			return "gitlab", errBadSignature
		}
		return "gitlab", nil
	}
	mac := hmac.New(sha256.New, h.opts.Secret)
	mac.Write(body)
	sum := mac.Sum(nil)
	if sig := hdr.Get("X-Hub-Signature-256"); sig != "" {
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		return "github", checkHex(hexSig, ok, sum)
	}
	for _, name := range []string{"X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature"} {
		if sig := hdr.Get(name); sig != "" {
			return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(name, "X-"), "-Signature")), checkHex(sig, true, sum)
		}
	}
	return "unknown", errUnsigned
}

func checkHex(sig string, ok bool, want []byte) error {
	got, err := hex.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(got, want) {
		return errBadSignature
	}
	return nil
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}
