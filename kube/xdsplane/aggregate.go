package xdsplane

import (
	"fmt"
	"slices"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/xds"
)

// replicaAnswer is one replica's view of one Rollout: the plan version it
// serves, how many xDS clients subscribe to the Rollout's service there,
// and what they answered for that version.
type replicaAnswer struct {
	replica string
	version string
	clients int
	state   engine.AckState
	message string
	// acked counts the clients that applied version; silent are those
	// that left it unanswered (the engine judges staleness).
	acked  int
	silent []engine.SilentNode
}

// localAnswer is this replica's tracker's answer about version.
func localAnswer(replica string, st xds.Status) replicaAnswer {
	dp := st.DataPlane()
	return replicaAnswer{replica: replica, version: st.PlanVersion, clients: st.Subscribed, state: dp.State, message: dp.Message, acked: dp.Acked, silent: dp.Silent}
}

// aggregate combines the replicas' answers about version, this replica's
// first, the others in a stable order:
//
//   - a replica whose clients rejected version: Rejected, with the first
//     such replica's message, naming it;
//   - clients on some replica, and every replica with clients has them
//     all acknowledging version: Acknowledged;
//   - otherwise, pending. A replica serving another version (an older
//     one, not yet fed the newer status) is pending for this one.
//
// clients is the total; with none anywhere the caller decides what
// stands in for them.
func aggregate(version string, answers []replicaAnswer) (dp engine.DataPlane, clients int) {
	dp = engine.DataPlane{Version: version}
	all := true
	for _, a := range answers {
		if a.clients <= 0 {
			continue
		}
		clients += a.clients
		// Counts add up across replicas for the engine's silent-proxy
		// policy; a replica on another version has acknowledged nothing.
		dp.Subscribed += a.clients
		if a.version == version {
			dp.Acked += a.acked
			dp.Silent = append(dp.Silent, a.silent...)
		}
		switch {
		case a.version != version:
			all = false
		case a.state == engine.AckRejected:
			if dp.State != engine.AckRejected {
				dp.State, dp.Message = engine.AckRejected, a.rejection()
			}
		case a.state != engine.AckAcknowledged:
			all = false
		}
	}
	if dp.State == engine.AckPending && clients > 0 && all {
		dp.State = engine.AckAcknowledged
	}
	slices.SortStableFunc(dp.Silent, func(a, b engine.SilentNode) int { return a.Since.Compare(b.Since) })
	return dp, clients
}

func (a replicaAnswer) equal(b replicaAnswer) bool {
	return a.replica == b.replica && a.version == b.version && a.clients == b.clients && a.state == b.state &&
		a.message == b.message && a.acked == b.acked &&
		slices.EqualFunc(a.silent, b.silent, func(x, y engine.SilentNode) bool { return x.Name == y.Name && x.Since.Equal(y.Since) })
}

// rejection is the NACK message, naming the replica the proxy is on.
func (a replicaAnswer) rejection() string {
	if a.replica == "" {
		return a.message
	}
	return fmt.Sprintf("replica %s: %s", a.replica, a.message)
}

// remote reports whether answers beyond the first (this replica's) have
// clients.
func remote(answers []replicaAnswer) bool {
	for _, a := range answers[1:] {
		if a.clients > 0 {
			return true
		}
	}
	return false
}
