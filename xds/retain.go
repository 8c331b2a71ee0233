package xds

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/sluicehq/sluice/rollout/plan"
)

// Clusters leave one plan late.
//
// A plan that drops a revision while it still takes traffic (an abort:
// 100% canary straight to a plan without the canary subset) would change
// the routes and remove the cluster in one publish, and the two reach a
// client as separate responses. Envoy, answered in ADS order, drops the
// cluster before its routes stop naming it. grpc-go (v1.85) keeps a
// cluster in its balancer, and its CDS watch open, until its routes no
// longer name it and every RPC that picked it is committed (xds resolver,
// clusterInfo.refCount); but a CDS response without a watched cluster is
// a deletion (xdsclient: `resource "reviews|v2" of type "ClusterResource"
// has been removed`), the cluster manager's child for it gets an error
// picker, and the RPCs routed to it in that moment, by the old routes or
// picked by them just before the new ones arrived, fail with UNAVAILABLE
// (about one abort in 16 lost one call in the blue/green end-to-end test).
//
// So the publish that drops a cluster from a service's plan keeps it, with
// its load assignment as the previous publish served them, for as long as
// the service's plan version stays the same; the next plan version drops
// it, by then at 0% for a whole plan. The change is then to a client what
// a weight change to 0% is (routes only), and the removal what promotion's
// removal of the old stable revision is (a cluster no route gives
// weight). For gRPC a kept cluster is named in the keep-warm route like
// every cluster of the host. Unnamed, a client would unwatch it and drop
// it from its cache; a retry right after the abort would name it again
// while the CDS version stays the same, the tracker would count that
// plan applied on the strength of the client's old ACK before the client
// had the cluster back, and the retry's first weight would fail RPCs with
// "unknown cluster selected for RPC".
//
// Nothing is kept from a plan version a node rejected (Server.keepable):
// that node would get the clusters, and the routes naming them, again.

// served is what one publish gave a service: its plan version, the
// clusters its plan made and those it kept from the version before.
type served struct {
	version    string
	made, kept []keptCluster
}

// keptCluster is a cluster with its load assignment.
type keptCluster struct {
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment
}

func (c keptCluster) name() string { return c.cluster.GetName() }

// keep gives the plan's service the clusters it keeps from what the
// previous publish served it, records what this one serves it (made: the
// clusters its plan made) and returns the names of those it keeps. A
// changed plan version keeps the clusters the previous one made and this
// one does not; an unchanged one keeps what it kept.
func (t *translator) keep(p *plan.Plan, made []keptCluster) []string {
	key := PlanKey(p)
	var kept []keptCluster
	if prev := t.prev[key]; prev != nil {
		from := prev.made
		if prev.version == p.Version {
			from = prev.kept
		}
		for _, c := range from {
			if !slices.ContainsFunc(made, func(m keptCluster) bool { return m.name() == c.name() }) {
				kept = append(kept, c)
			}
		}
	}
	t.out.served[key] = &served{version: p.Version, made: made, kept: kept}
	names := make([]string, len(kept))
	for i, c := range kept {
		t.share(serviceOwner(key), p.Version, c)
		names[i] = c.name()
	}
	return names
}

// share gives both groups the cluster and its load assignment, owned by
// the service; a listener's closure names it only if its routes do
// (translate.go). Both groups get the very objects the service keeps:
// nothing modifies a resource once translated (fragment.go), so one copy
// serves both groups, every view and the next publish, and is validated
// and hashed once (buildBase). A copy per group made each cluster live
// three times over.
func (t *translator) share(svc ownerKey, version string, c keptCluster) {
	for _, g := range groups {
		r := t.out.Group(g)
		r.Clusters = append(r.Clusters, c.cluster)
		r.Endpoints = append(r.Endpoints, c.cla)
		r.owner(svc, version).add(resID{kindCluster, c.name()}, resID{kindEndpoint, c.name()})
	}
}
