package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A proxy that subscribes and never answers: before the deadline it only
// waits (and the engine asks to be woken at the deadline); past it the
// node is stale, reported in status, an Event and the Progressing
// condition; Hold keeps the step waiting, Exclude lets it count when
// every other node applied the plan, and never when none did.
func TestSilentProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		policy   v1alpha1.SilentProxyPolicy
		acked    int
		proceeds bool
	}{
		{"default holds", "", 2, false},
		{"hold", v1alpha1.SilentHold, 2, false},
		{"exclude", v1alpha1.SilentExclude, 2, true},
		{"exclude needs one answer", v1alpha1.SilentExclude, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := standalone("v2", canary(weight(10), pauseForever()))
			ro.Spec.DataPlane = v1alpha1.DataPlanePolicy{AckDeadlineSeconds: i32(5), SilentProxies: tc.policy}
			h := newHarness(t, ro)
			h.wantStep(0)
			sent := h.now
			silent := func() Output {
				return h.step(Observations{DataPlane: DataPlane{
					Version: h.out.Plan.Version, Subscribed: tc.acked + 1, Acked: tc.acked,
					Silent: []SilentNode{{Name: "reviews-sidecar-7\x1b[31m", Since: sent}},
				}})
			}
			h.now = sent.Add(2 * time.Second)
			out := silent()
			if h.ro.Status.Traffic.StaleNodes != nil || h.ro.Status.StepAcknowledgedAt != nil {
				t.Fatalf("before the deadline: stale %+v, acknowledged %v", h.ro.Status.Traffic.StaleNodes, h.ro.Status.StepAcknowledgedAt)
			}
			if out.RequeueAfter != 3*time.Second {
				t.Errorf("RequeueAfter = %s, want 3s (the deadline)", out.RequeueAfter)
			}

			h.now = sent.Add(5 * time.Second)
			out = silent()
			sn := h.ro.Status.Traffic.StaleNodes
			if sn == nil || sn.Count != 1 || len(sn.Nodes) != 1 || strings.Contains(sn.Nodes[0], "\x1b") || !strings.HasPrefix(sn.Nodes[0], "reviews-sidecar-7") {
				t.Fatalf("status.traffic.staleNodes = %+v, want the one node, escaped", sn)
			}
			if len(out.Events) == 0 || out.Events[0].Reason != v1alpha1.ReasonStaleProxies {
				t.Errorf("events %+v, want %s", out.Events, v1alpha1.ReasonStaleProxies)
			}
			if got := h.ro.Status.StepAcknowledgedAt != nil; got != tc.proceeds {
				t.Fatalf("step acknowledged = %v, want %v (%s)", got, tc.proceeds, h.ro.Status.Message)
			}
			if sn.Excluded != tc.proceeds {
				t.Errorf("excluded = %v, want %v", sn.Excluded, tc.proceeds)
			}
			progressing := ""
			for _, c := range h.ro.Status.Conditions {
				if c.Type == v1alpha1.ConditionProgressing {
					progressing = c.Reason
				}
			}
			if !tc.proceeds && (progressing != v1alpha1.ReasonStaleProxies || !strings.Contains(h.ro.Status.Message, "holding the step")) {
				t.Errorf("held: Progressing %s, message %q, want %s saying why", progressing, h.ro.Status.Message, v1alpha1.ReasonStaleProxies)
			}
			// The same stale node again: no second Event.
			h.now = h.now.Add(time.Second)
			if out := silent(); len(out.Events) != 0 && !tc.proceeds {
				t.Errorf("repeated events %+v", out.Events)
			}
			// The node answers: the report goes.
			h.ack()
			if h.ro.Status.Traffic.StaleNodes != nil {
				t.Errorf("after the ACK: stale %+v", h.ro.Status.Traffic.StaleNodes)
			}
		})
	}
}
