package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var aborted = Notification{
	Namespace: "shop", Rollout: "reviews",
	Type: engine.EventWarning, Reason: v1alpha1.ReasonAnalysisFailed,
	Message: "rollout of v2 aborted: error rate 0.07 > 0.05 <!here> & co; 100% to stable v1",
	Time:    t0, StableRevision: "v1", CanaryRevision: "v2", Step: "3/6",
	StableWeight: 80, CanaryWeight: 20, Commit: "0123456789abcdef0123",
}

var promoted = Notification{
	Rollout: "reviews", Type: engine.EventNormal, Reason: v1alpha1.ReasonPromoted,
	Message: "revision v2 promoted: serves 100% (was v1)", Time: t0,
	StableRevision: "v2", StableWeight: 100,
}

// Delivery of both formats, byte for byte, with their headers.
func TestFormats(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	cases := []struct {
		name       string
		kind       Kind
		secret     []byte
		n          Notification
		wantBody   string
		wantHeader map[string]string // "" means absent
	}{
		{
			name: "webhook, signed", kind: KindWebhook, secret: secret, n: aborted,
			wantBody: `{"version":1,"id":"id-1","rollout":{"namespace":"shop","name":"reviews"},` +
				`"event":{"type":"Warning","reason":"AnalysisFailed","message":"rollout of v2 aborted: error rate 0.07 > 0.05 <!here> & co; 100% to stable v1","time":"2026-03-01T11:00:00Z"},` +
				`"stableRevision":"v1","canaryRevision":"v2","step":"3/6","traffic":{"stable":80,"canary":20},"commit":"0123456789abcdef0123"}`,
			wantHeader: map[string]string{"Content-Type": "application/json", DeliveryHeader: "id-1", EventHeader: "AnalysisFailed"},
		},
		{
			name: "webhook, unsigned, no rollout in progress", kind: KindWebhook, n: promoted,
			wantBody: `{"version":1,"id":"id-1","rollout":{"name":"reviews"},` +
				`"event":{"type":"Normal","reason":"RolloutPromoted","message":"revision v2 promoted: serves 100% (was v1)","time":"2026-03-01T11:00:00Z"},` +
				`"stableRevision":"v2","traffic":{"stable":100,"canary":0}}`,
			wantHeader: map[string]string{"Content-Type": "application/json", DeliveryHeader: "id-1", SignatureHeader: ""},
		},
		{
			name: "slack, warning in red, mrkdwn escaped", kind: KindSlack, n: aborted,
			wantBody: `{"text":"*shop/reviews · AnalysisFailed*","attachments":[{"color":"#E01E5A",` +
				`"fallback":"shop/reviews · AnalysisFailed: rollout of v2 aborted: error rate 0.07 &gt; 0.05 &lt;!here&gt; &amp; co; 100% to stable v1",` +
				`"text":"rollout of v2 aborted: error rate 0.07 &gt; 0.05 &lt;!here&gt; &amp; co; 100% to stable v1",` +
				`"fields":[{"title":"Stable","value":"` + "`v1`" + `","short":true},{"title":"Canary","value":"` + "`v2`" + `","short":true},` +
				`{"title":"Step","value":"3/6","short":true},{"title":"Traffic","value":"80% stable · 20% canary","short":true},` +
				`{"title":"Commit","value":"` + "`0123456789ab`" + `","short":true}],` +
				`"footer":"sluice","ts":1772362800,"mrkdwn_in":["text","fields"]}]}`,
			wantHeader: map[string]string{"Content-Type": "application/json", DeliveryHeader: "", SignatureHeader: ""},
		},
		{
			name: "slack, promotion in green", kind: KindSlack, n: promoted,
			wantBody: `{"text":"*reviews · RolloutPromoted*","attachments":[{"color":"#2EB67D",` +
				`"fallback":"reviews · RolloutPromoted: revision v2 promoted: serves 100% (was v1)",` +
				`"text":"revision v2 promoted: serves 100% (was v1)",` +
				`"fields":[{"title":"Stable","value":"` + "`v2`" + `","short":true}],` +
				`"footer":"sluice","ts":1772362800,"mrkdwn_in":["text","fields"]}]}`,
		},
		{
			name: "slack, step in blue", kind: KindSlack, n: step("step 2/6: setWeight 20"),
			wantBody: `{"text":"*reviews · StepAdvanced*","attachments":[{"color":"#439FE0",` +
				`"fallback":"reviews · StepAdvanced: step 2/6: setWeight 20","text":"step 2/6: setWeight 20",` +
				`"footer":"sluice","ts":1772362800,"mrkdwn_in":["text","fields"]}]}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, nil)
			nf := newNotifier(t, []Target{{Name: "t", Kind: tc.kind, URL: rc.srv.URL, Secret: tc.secret, Events: []string{"*"}}}, testOptions(&sleeper{}))
			nf.Notify(tc.n)
			closeAll(t, nf)
			reqs := rc.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if got := string(reqs[0].body); got != tc.wantBody {
				t.Errorf("body:\n got %s\nwant %s", got, tc.wantBody)
			}
			for h, want := range tc.wantHeader {
				if got := reqs[0].header.Get(h); got != want {
					t.Errorf("header %s = %q, want %q", h, got, want)
				}
			}
			if tc.secret != nil {
				// Computed here from first principles, not with Sign.
				mac := hmac.New(sha256.New, tc.secret)
				mac.Write(reqs[0].body)
				want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
				if got := reqs[0].header.Get(SignatureHeader); got != want {
					t.Errorf("signature %q, want %q", got, want)
				}
			}
		})
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"version":1}`)
	good := Sign([]byte("k"), body)
	cases := []struct {
		name   string
		secret string
		body   []byte
		header string
		ok     bool
	}{
		{"valid", "k", body, good, true},
		{"other secret", "k2", body, good, false},
		{"tampered body", "k", []byte(`{"version":2}`), good, false},
		{"no prefix", "k", body, good[len("sha256="):], false},
		{"not hex", "k", body, "sha256=zz", false},
		{"empty", "k", body, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := Verify([]byte(tc.secret), tc.body, tc.header); (err == nil) != tc.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestFromEvent(t *testing.T) {
	t.Parallel()
	idx := int32(2)
	st := &v1alpha1.RolloutStatus{
		StableRevision: "v1", CanaryRevision: "v2", CurrentStepIndex: &idx, StepDisplay: "3/6",
		Traffic: v1alpha1.TrafficStatus{StableWeight: 80, CanaryWeight: 20},
		Git:     &v1alpha1.GitProvenance{Commit: "0123456789abcdef0123", CommitTime: &metav1.Time{Time: t0}},
	}
	ev := engine.Event{Type: engine.EventWarning, Reason: v1alpha1.ReasonAnalysisFailed, Message: aborted.Message}
	cases := []struct {
		name string
		st   *v1alpha1.RolloutStatus
		want Notification
	}{
		{"with status", st, aborted},
		{"without status", nil, Notification{Namespace: "shop", Rollout: "reviews", Type: ev.Type, Reason: ev.Reason, Message: ev.Message, Time: t0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := FromEvent("shop", "reviews", ev, tc.st, t0); got != tc.want {
				t.Fatalf("FromEvent =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}
