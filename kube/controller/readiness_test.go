package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// promote --full while 1 of 3 canary replicas is available keeps the
// canary's traffic at what that one replica carries (25%), not the 100% of
// promotion nor the 50% of a later step, until all three are available;
// then the promotion is routed and completes.
func TestPromoteFullWaitsForCanaryReplicas(t *testing.T) {
	h := newHarness(t, setWeight(25), pauseUntilPromoted(), setWeight(50), pauseUntilPromoted())
	h.drive("healthy on v1", healthy)
	v2 := h.setImage("checkout:v2")
	h.drive("paused at 25%", h.stepIs(1))
	h.wantCanaryWeight(25)

	h.annotate(t, Command{ID: "full-1", Kind: v1alpha1.CommandPromoteFull, By: "alice@example.com", At: h.now})
	for range 4 {
		// The ReplicaSet is scaled to 3; the kubelet has one pod ready.
		h.setAvailable(v2, 1)
		h.now = h.now.Add(5 * time.Second)
		h.mustReconcile()
		h.wantReplicas(v2, 3)
		h.wantCanaryWeight(25)
		if st := h.ro.Status; !strings.Contains(st.Message, "waiting for canary replicas") {
			t.Fatalf("status %s %q, want it waiting for canary replicas", st.Phase, st.Message)
		}
	}
	if lc := h.ro.Status.LastCommand; lc == nil || lc.ID != "full-1" || !strings.Contains(lc.Result, "promoting to 100%") {
		t.Fatalf("lastCommand %+v, want full-1 promoting", lc)
	}
	h.drive("promoted once all 3 are available", func(ro *v1alpha1.Rollout) bool { return healthy(ro) && ro.Status.StableRevision == v2 })
}

// setAvailable plays a kubelet that has n pods of a revision's ReplicaSet
// ready, whatever its spec asks for.
func (h *harness) setAvailable(rev string, n int32) {
	h.t.Helper()
	rs := h.replicaSet(rev)
	rs.Status.Replicas = *rs.Spec.Replicas
	rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n
	rs.Status.ObservedGeneration = rs.Generation
	if err := h.c.Status().Update(context.Background(), rs); err != nil {
		h.t.Fatal(err)
	}
}
