package xdsplane

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/xds"
)

func TestAggregate(t *testing.T) {
	t.Parallel()
	const v, old = "v2", "v1"
	acked := func(replica string, clients int) replicaAnswer {
		return replicaAnswer{replica: replica, version: v, clients: clients, state: engine.AckAcknowledged}
	}
	pending := func(replica string, clients int) replicaAnswer {
		return replicaAnswer{replica: replica, version: v, clients: clients}
	}
	rejected := func(replica, msg string) replicaAnswer {
		return replicaAnswer{replica: replica, version: v, clients: 1, state: engine.AckRejected, message: msg}
	}
	none := func(replica string) replicaAnswer { return replicaAnswer{replica: replica, version: v} }
	tests := []struct {
		name        string
		answers     []replicaAnswer
		want        engine.AckState
		wantClients int
		wantMsg     string
	}{
		{"no clients anywhere", []replicaAnswer{none("a"), none("b")}, engine.AckPending, 0, ""},
		{"clients only here, all acked", []replicaAnswer{acked("a", 2)}, engine.AckAcknowledged, 2, ""},
		{"clients only on a follower, acked", []replicaAnswer{none("a"), acked("b", 3)}, engine.AckAcknowledged, 3, ""},
		{"every replica with clients acked", []replicaAnswer{acked("a", 1), acked("b", 2), none("c")}, engine.AckAcknowledged, 3, ""},
		{"one replica still pending", []replicaAnswer{acked("a", 1), pending("b", 2)}, engine.AckPending, 3, ""},
		{"a follower pending, none here", []replicaAnswer{none("a"), pending("b", 1)}, engine.AckPending, 1, ""},
		{"a follower serving the older version", []replicaAnswer{acked("a", 1), {replica: "b", version: old, clients: 1, state: engine.AckAcknowledged}}, engine.AckPending, 2, ""},
		{"an older version's rejection does not count", []replicaAnswer{acked("a", 1), {replica: "b", version: old, clients: 1, state: engine.AckRejected, message: "bad"}}, engine.AckPending, 2, ""},
		{"a follower rejected", []replicaAnswer{acked("a", 1), rejected("b", "listener reviews: bad regex")}, engine.AckRejected, 2, "replica b: listener reviews: bad regex"},
		{"rejection wins over pending", []replicaAnswer{pending("a", 4), rejected("c", "nack")}, engine.AckRejected, 5, "replica c: nack"},
		{"the first rejecting replica is named", []replicaAnswer{rejected("a", "mine"), rejected("b", "theirs")}, engine.AckRejected, 2, "replica a: mine"},
		{"without a replica name the message is the proxy's", []replicaAnswer{rejected("", "nack")}, engine.AckRejected, 1, "nack"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dp, clients := aggregate(v, tc.answers)
			if dp.Version != v || dp.State != tc.want || clients != tc.wantClients || dp.Message != tc.wantMsg {
				t.Errorf("aggregate = %+v with %d clients; want %q with %d clients, message %q", dp, clients, tc.want, tc.wantClients, tc.wantMsg)
			}
		})
	}
}

// A report entry says what the tracker says, in a few bytes, and reads
// back, through JSON, as the same answer.
func TestReportEntryRoundTrip(t *testing.T) {
	t.Parallel()
	node := xds.NodeRef{ID: "checkout-7f9c", Group: xds.GroupGRPC, Stream: 4}
	silentSince := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	nack := func(msg string) []xds.Rejection {
		return []xds.Rejection{{Node: node, TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener", Version: "abc", Message: msg}}
	}
	long := strings.Repeat("x", 4*maxReportMessage)
	tests := []struct {
		name   string
		status xds.Status
		want   replicaAnswer
	}{
		{"acknowledged", xds.Status{PlanVersion: "p", Subscribed: 2, Acked: 2},
			replicaAnswer{replica: "b", version: "p", clients: 2, state: engine.AckAcknowledged, acked: 2}},
		{"pending", xds.Status{PlanVersion: "p", Subscribed: 2, Acked: 1, Pending: []xds.NodeRef{node}},
			replicaAnswer{replica: "b", version: "p", clients: 2, acked: 1}},
		{"silent", xds.Status{PlanVersion: "p", Subscribed: 2, Acked: 1, Pending: []xds.NodeRef{node}, Silent: []xds.SilentNode{{Node: node, Since: silentSince}}},
			replicaAnswer{replica: "b", version: "p", clients: 2, acked: 1, silent: []engine.SilentNode{{Name: node.ID, Since: silentSince}}}},
		{"rejected", xds.Status{PlanVersion: "p", Subscribed: 1, Rejected: nack("bad regex")},
			replicaAnswer{replica: "b", version: "p", clients: 1, state: engine.AckRejected, message: nack("bad regex")[0].String()}},
	}
	for _, tc := range tests {
		if got := roundTrip(t, entryOf(tc.status)).answer("b"); !got.equal(tc.want) {
			t.Errorf("%s: answer %+v, want %+v", tc.name, got, tc.want)
		}
	}
	e := roundTrip(t, entryOf(xds.Status{PlanVersion: "p", Subscribed: 1, Rejected: nack(long)}))
	if len(e.Message) > maxReportMessage || !strings.Contains(e.Message, node.ID) {
		t.Errorf("a long NACK message is reported in %d bytes (at most %d, naming the node): %q", len(e.Message), maxReportMessage, e.Message)
	}
	if a := (ReportEntry{Plan: "p", Clients: 1, State: "Draining"}).answer("b"); a.state != engine.AckPending {
		t.Errorf("a state this version does not know: %+v, want pending", a)
	}
}

func roundTrip(t *testing.T, e ReportEntry) ReportEntry {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var out ReportEntry
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The engine's silent-proxy policy sees every replica's counts: clients
// add up, only answers about the version count as applied, and silent
// nodes come oldest first whichever replica holds them.
func TestAggregateCountsSilentNodes(t *testing.T) {
	t.Parallel()
	t1, t2 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC), time.Date(2026, 12, 6, 18, 0, 5, 0, time.UTC)
	dp, clients := aggregate("v2", []replicaAnswer{
		{replica: "a", version: "v2", clients: 2, acked: 1, silent: []engine.SilentNode{{Name: "late", Since: t2}}},
		{replica: "b", version: "v2", clients: 3, acked: 2, silent: []engine.SilentNode{{Name: "early", Since: t1}}},
		{replica: "c", version: "v1", clients: 1, acked: 1, silent: []engine.SilentNode{{Name: "older-plan", Since: t1}}},
	})
	if clients != 6 || dp.Subscribed != 6 || dp.Acked != 3 || dp.State != engine.AckPending {
		t.Errorf("aggregate = %+v with %d clients, want 6 subscribed, 3 acked, pending", dp, clients)
	}
	if len(dp.Silent) != 2 || dp.Silent[0].Name != "early" || dp.Silent[1].Name != "late" {
		t.Errorf("silent %+v, want early then late (not the replica on the older plan)", dp.Silent)
	}
}
