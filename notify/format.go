package notify

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Headers of webhook requests.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// under the target's secret, on webhook targets with a secret.
	SignatureHeader = "X-Sluice-Signature-256"
	// DeliveryHeader is the notification's ID, the same on every retry, so
	// a receiver can drop duplicates.
	DeliveryHeader = "X-Sluice-Delivery"
	// EventHeader is the event reason, for routing without parsing.
	EventHeader = "X-Sluice-Event"
)

// PayloadVersion is the version of the webhook payload's shape.
const PayloadVersion = 1

// WebhookPayload is the body of a generic webhook request.
type WebhookPayload struct {
	Version        int          `json:"version"`
	ID             string       `json:"id"`
	Rollout        RolloutRef   `json:"rollout"`
	Event          EventPayload `json:"event"`
	StableRevision string       `json:"stableRevision,omitempty"`
	CanaryRevision string       `json:"canaryRevision,omitempty"`
	Step           string       `json:"step,omitempty"`
	Traffic        Traffic      `json:"traffic"`
	Commit         string       `json:"commit,omitempty"`
}

// RolloutRef names a Rollout.
type RolloutRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// EventPayload is the event part of a webhook payload.
type EventPayload struct {
	Type    engine.EventType `json:"type"`
	Reason  string           `json:"reason"`
	Message string           `json:"message"`
	Time    time.Time        `json:"time"`
}

// Traffic is the split in percent.
type Traffic struct {
	Stable int32 `json:"stable"`
	Canary int32 `json:"canary"`
}

func webhookBody(it item) ([]byte, error) {
	n := it.n
	return marshal(WebhookPayload{
		Version:        PayloadVersion,
		ID:             it.id,
		Rollout:        RolloutRef{Namespace: n.Namespace, Name: n.Rollout},
		Event:          EventPayload{Type: n.Type, Reason: n.Reason, Message: n.Message, Time: n.Time.UTC()},
		StableRevision: n.StableRevision, CanaryRevision: n.CanaryRevision, Step: n.Step,
		Traffic: Traffic{Stable: n.StableWeight, Canary: n.CanaryWeight},
		Commit:  n.Commit,
	})
}

// Sign returns the SignatureHeader value for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a SignatureHeader value against body, in constant time;
// for receivers written in Go.
func Verify(secret, body []byte, header string) error {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return errors.New("signature: want sha256=<hex>")
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(sum, mac.Sum(nil)) {
		return errors.New("signature: mismatch")
	}
	return nil
}

// Slack message: a short text (what notifications and old clients show)
// and one legacy attachment for the colour bar and fields. Attachments,
// unlike blocks, are understood by Mattermost and Rocket.Chat as well.
type slackMessage struct {
	Text        string            `json:"text"`
	Attachments []slackAttachment `json:"attachments"`
}

type slackAttachment struct {
	Color    string       `json:"color"`
	Fallback string       `json:"fallback"`
	Text     string       `json:"text"`
	Fields   []slackField `json:"fields,omitempty"`
	Footer   string       `json:"footer"`
	Ts       int64        `json:"ts"`
	MrkdwnIn []string     `json:"mrkdwn_in"`
}

type slackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// Attachment colours: Slack's own red, green and blue.
const (
	colorWarning = "#E01E5A"
	colorGood    = "#2EB67D"
	colorInfo    = "#439FE0"
)

func slackColor(n Notification) string {
	switch {
	case n.Type == engine.EventWarning:
		return colorWarning
	case n.Reason == v1alpha1.ReasonPromoted || n.Reason == v1alpha1.ReasonStable:
		return colorGood
	}
	return colorInfo
}

func slackBody(it item) ([]byte, error) {
	n := it.n
	name := n.Rollout
	if n.Namespace != "" {
		name = n.Namespace + "/" + n.Rollout
	}
	title := slackEscape(name) + " · " + slackEscape(n.Reason)
	var fields []slackField
	add := func(title, value string) {
		if value != "" {
			fields = append(fields, slackField{Title: title, Value: value, Short: true})
		}
	}
	add("Stable", code(n.StableRevision))
	add("Canary", code(n.CanaryRevision))
	add("Step", slackEscape(n.Step))
	if n.CanaryRevision != "" {
		add("Traffic", fmt.Sprintf("%d%% stable · %d%% canary", n.StableWeight, n.CanaryWeight))
	}
	commit := n.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	add("Commit", code(commit))
	return marshal(slackMessage{
		Text: "*" + title + "*",
		Attachments: []slackAttachment{{
			Color:    slackColor(n),
			Fallback: title + ": " + slackEscape(n.Message),
			Text:     slackEscape(n.Message),
			Fields:   fields,
			Footer:   "sluice",
			Ts:       n.Time.Unix(),
			MrkdwnIn: []string{"text", "fields"},
		}},
	})
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + slackEscape(s) + "`"
}

// slackEscape escapes the three characters Slack's mrkdwn reserves for
// links and mentions, so a message cannot ping @channel or forge a link.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// marshal encodes without HTML escaping: the payloads go to APIs, not into
// HTML, and "<" as \u003c would only make them harder to read.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
