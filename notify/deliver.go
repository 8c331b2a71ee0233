package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// deliver sends one notification to t, retrying as configured. Failures
// are counted and logged here: nobody waits for the result.
func (nf *Notifier) deliver(t *target, it item) {
	render := webhookBody
	if t.Kind == KindSlack {
		render = slackBody
	}
	body, err := render(it)
	if err != nil {
		nf.fail(t, it, 0, err)
		it.sent.finish(false) // it would never render: give up on it
		return
	}
	log := nf.opts.Log.WithValues("target", t.Name, "delivery", it.id, "reason", it.n.Reason)
	for attempt := 1; ; attempt++ {
		start := nf.opts.Now()
		err := nf.post(t, it, body)
		nf.m.requests.WithLabelValues(t.Name).Observe(nf.opts.Now().Sub(start).Seconds())
		if err == nil {
			nf.m.sent.WithLabelValues(t.Name).Inc()
			nf.m.latency.WithLabelValues(t.Name).Observe(nf.opts.Now().Sub(it.enqueued).Seconds())
			it.sent.finish(false)
			return
		}
		if nf.ctx.Err() != nil {
			nf.aborted.Add(1)
			nf.fail(t, it, attempt, fmt.Errorf("notifier closed: %w", err))
			it.sent.finish(true)
			return
		}
		wait, retry := nf.retryAfter(err, attempt)
		if !retry || attempt >= nf.opts.MaxAttempts {
			// Given up, counted and logged: sending it again would meet
			// the same answer.
			nf.fail(t, it, attempt, err)
			it.sent.finish(false)
			return
		}
		nf.m.retries.WithLabelValues(t.Name).Inc()
		log.V(1).Info("notification failed, retrying", "attempt", attempt, "wait", wait, "error", err.Error())
		if err := nf.opts.Sleep(nf.ctx, wait); err != nil {
			nf.aborted.Add(1)
			nf.fail(t, it, attempt, fmt.Errorf("notifier closed while waiting to retry: %w", err))
			it.sent.finish(true)
			return
		}
	}
}

func (nf *Notifier) fail(t *target, it item, attempts int, err error) {
	nf.m.failed.WithLabelValues(t.Name).Inc()
	nf.opts.Log.Error(err, "notification not delivered", "target", t.Name, "delivery", it.id,
		"rollout", it.n.Rollout, "reason", it.n.Reason, "attempts", attempts)
}

// httpError is a non-2xx answer.
type httpError struct {
	code       int
	retryAfter string
	body       string
}

func (e *httpError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("receiver answered %d", e.code)
	}
	return fmt.Sprintf("receiver answered %d: %s", e.code, e.body)
}

func (nf *Notifier) post(t *target, it item, body []byte) error {
	ctx, cancel := context.WithTimeout(nf.ctx, nf.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-notify")
	if t.Kind == KindWebhook {
		req.Header.Set(DeliveryHeader, it.id)
		req.Header.Set(EventHeader, it.n.Reason)
		if len(t.Secret) > 0 {
			req.Header.Set(SignatureHeader, Sign(t.Secret, body))
		}
	}
	resp, err := nf.opts.Client.Do(req)
	if err != nil {
		// url.Error quotes the URL, which for Slack is the credential.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	// Read a little of the answer for the error message, and drain it so
	// the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &httpError{
		code:       resp.StatusCode,
		retryAfter: resp.Header.Get("Retry-After"),
		body:       strings.TrimSpace(string(snippet)),
	}
}

// retryAfter decides whether err is worth another attempt, and when.
// Network errors and 408, 429 and 5xx answers (but 501 and 505, which will
// not change) are retried; other answers mean the request itself is wrong.
func (nf *Notifier) retryAfter(err error, attempt int) (time.Duration, bool) {
	var he *httpError
	if !errors.As(err, &he) {
		return nf.backoff(attempt), true
	}
	switch c := he.code; {
	case c == http.StatusTooManyRequests || c == http.StatusServiceUnavailable:
		if d, ok := parseRetryAfter(he.retryAfter, nf.opts.Now()); ok {
			if d > nf.opts.MaxRetryAfter {
				return 0, false
			}
			return d, true
		}
		return nf.backoff(attempt), true
	case c == http.StatusRequestTimeout, c >= 500 && c != http.StatusNotImplemented && c != http.StatusHTTPVersionNotSupported:
		return nf.backoff(attempt), true
	}
	return 0, false
}

// backoff is BaseBackoff·2^(attempt-1), capped at MaxBackoff, with "equal
// jitter": a uniform draw from its upper half.
func (nf *Notifier) backoff(attempt int) time.Duration {
	d := nf.opts.MaxBackoff
	if attempt-1 < 32 {
		if e := nf.opts.BaseBackoff << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP
// date. A date in the past means "now".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
