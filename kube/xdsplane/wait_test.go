package xdsplane

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/engine"
)

// A node that never answers holds back the final answer, not the
// reconciler: the leader's plane wakes it while the answer is partial, so
// the engine sees the silent node (on another replica here, through its
// report) and since when, and can judge it against the Rollout's
// deadline. With nothing more changing the plane stays quiet; the node
// leaving brings the final answer.
func TestWakeWhileANodeStaysSilent(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	ctx := context.Background()
	ro, p30 := servedRollout(t, c, ns)
	leader, follower := startReplica(t, ns, "leader"), startReplica(t, ns, "follower")
	xdstest.Client(t, leader.addr, "answering", "reviews")
	waitInForce(t, leader, p30)
	waitInForce(t, follower, p30)
	quiet := xdstest.SilentNode(t, follower.addr, "silent", "reviews")
	// Before the next plan: a node the leader has not heard of when its
	// only other client ACKs is not waited for.
	poll.Until(t, "the follower's report of the silent node", func() bool {
		a := leader.reports.answers(keyOf(ro))
		return len(a) == 1 && a[0].clients == 1
	})

	p80 := advance(t, ro, 80)
	writeStatus(t, c, ro)
	if err := leader.plane.Publish(ctx, ro, p80); err != nil {
		t.Fatal(err)
	}
	dp := wakeUntil(t, leader.plane, ro, p80.Version, "the silent node", func(dp engine.DataPlane) bool {
		return dp.Acked == 1 && len(dp.Silent) == 1
	})
	if dp.State != engine.AckPending || dp.Subscribed != 2 || dp.Silent[0].Name != "silent" || dp.Silent[0].Since.IsZero() {
		t.Errorf("partial answer %+v: want pending, 2 subscribed, the answering node's ACK, the silent node and since when", dp)
	}
	select {
	case <-leader.plane.Wake():
		// Only a change of who answered may wake: a node that stays
		// silent is no news.
		if dp2, err := leader.plane.Acknowledgement(ctx, ro, p80.Version); err != nil || dp2.Acked == dp.Acked && len(dp2.Silent) == len(dp.Silent) && dp2.Subscribed == dp.Subscribed {
			t.Errorf("woken again with nothing new: %+v, %v", dp2, err)
		}
	case <-time.After(time.Second):
	}

	quiet()
	if dp := answerOnWake(t, leader.plane, ro, p80.Version); dp.State != engine.AckAcknowledged {
		t.Errorf("answer once the silent node left: %+v, want acknowledged", dp)
	}
}
