package runner

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/xds"
)

// TestDataPlaneDetail: pending, silent and rejecting proxies by name, with
// their texts bounded; those that applied the plan named only when every
// other stream is one of them.
func TestDataPlaneDetail(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	node := func(id string, stream int64) xds.NodeRef { return xds.NodeRef{ID: id, Cluster: "c", Stream: stream} }
	st := xds.Status{PlanVersion: "p1", Subscribed: 4, Acked: 2,
		Pending:  []xds.NodeRef{node("slow", 3)},
		Silent:   []xds.SilentNode{{Node: node("slow", 3), Since: at}},
		Rejected: []xds.Rejection{{Node: node("nacker\x1b[31m", 4), TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener", Message: "bad\nroute", At: at}},
	}
	nodes := []xds.NodeStatus{{Node: node("a", 1)}, {Node: node("b", 2)}, {Node: node("slow", 3)}, {Node: node("nacker\x1b[31m", 4)}}
	d := dataPlaneDetail(st, nodes)
	if d.PlanVersion != "p1" || d.Subscribed != 4 || d.Acked != 2 {
		t.Fatalf("counts: %+v", d)
	}
	if len(d.Pending) != 1 || d.Pending[0].Node != "slow" || d.Pending[0].Since == nil || !d.Pending[0].Since.Equal(at) {
		t.Errorf("pending: %+v", d.Pending)
	}
	if len(d.Rejected) != 1 || d.Rejected[0].Node != `nacker\x1b[31m` || d.Rejected[0].Error != `bad\nroute` || d.Rejected[0].At == nil {
		t.Errorf("rejected: %+v", d.Rejected)
	}
	if len(d.AckedProxies) != 2 || d.AckedProxies[0].Node != "a" || d.AckedProxies[1].Node != "b" {
		t.Errorf("acked: %+v", d.AckedProxies)
	}
	// A connected node that receives other services only: the ACKs are
	// counted, not named.
	nodes = append(nodes, xds.NodeStatus{Node: node("other-service", 5)})
	if d := dataPlaneDetail(st, nodes); d.AckedProxies != nil || d.Acked != 2 {
		t.Errorf("acked named though not every stream is this service's: %+v", d.AckedProxies)
	}
}
