package controller

import (
	"fmt"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// countPods sets status.stableReplicas and status.canaryReplicas, the
// printer columns' "Stable Ready" and "Canary Ready": for each revision,
// the replicas this reconcile's scale gives its ReplicaSet and the pods
// its ReplicaSet last reported available. A Rollout without pods of its
// own (no spec.replicas) has neither.
func countPods(rc *reconcileContext) {
	st := &rc.ro.Status
	st.StableReplicas, st.CanaryReplicas = nil, nil
	if rc.ro.Spec.Replicas == nil {
		return
	}
	desired := map[string]int32{}
	for _, s := range rc.out.Scale {
		desired[s.Revision] = s.Replicas
	}
	count := func(rev string) *v1alpha1.RevisionReplicas {
		if rev == "" {
			return nil
		}
		r := &v1alpha1.RevisionReplicas{Desired: desired[rev]}
		if rs := rc.replicaSets[rev]; rs != nil {
			r.Ready = rs.Status.AvailableReplicas
		}
		r.Display = fmt.Sprintf("%d/%d", r.Ready, r.Desired)
		return r
	}
	st.StableReplicas = count(st.StableRevision)
	if st.CanaryRevision != st.StableRevision {
		st.CanaryReplicas = count(st.CanaryRevision)
	}
}
