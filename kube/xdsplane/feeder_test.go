package xdsplane

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// replica is one `sluice controller` process as far as xDS goes: a
// manager whose cache feeds an EndpointSlice source, an xDS server and a
// Plane through a Feeder, and the replica's report of its clients, with
// the other replicas' reports for its Plane. Leader election is left out:
// a Feeder, the server and the reports need none, and the test plays the
// leader's reconciler itself.
type replica struct {
	name    string
	srv     *xds.Server
	plane   *Plane
	reports *Reports
	metrics *Metrics
	addr    string
	// stop stops the replica, as SIGTERM does, and waits until it has.
	stop func()
}

// replicaMinInterval is the replicas' least time between two writes of
// their reports.
const replicaMinInterval = 50 * time.Millisecond

// startReplica starts a replica named name whose controller namespace is
// ns, the test's: parallel tests never see each other's reports.
func startReplica(t *testing.T, ns, name string) *replica {
	t.Helper()
	cfg, scheme := env.Start(t)
	byObject := CacheByObject()
	maps.Copy(byObject, ReportCacheByObject(ns))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, metrics: m, addr: lis.Addr().String()}
	// Publishing reads endpoints from the cache, which serves nothing
	// before it synced: RunManager returns once it has.
	r.stop = kubetest.RunManager(t, cfg, manager.Options{
		Scheme: scheme,
		// The test's namespace only: parallel tests route the same hosts.
		Cache: cache.Options{ByObject: byObject, DefaultNamespaces: map[string]cache.Config{ns: {}}},
	}, func(ctx context.Context, mgr manager.Manager) error {
		eps, err := NewEndpointSlices(ctx, mgr.GetCache())
		if err != nil {
			return err
		}
		if r.srv, err = xds.New(xds.Options{Endpoints: eps, Logger: quiet}); err != nil {
			return err
		}
		opts := ReportOptions{Namespace: ns, Replica: name, MinInterval: replicaMinInterval, Heartbeat: 2 * time.Second, Metrics: m}
		if r.reports, err = NewReports(ctx, mgr.GetCache(), mgr.GetClient(), opts); err != nil {
			return err
		}
		r.plane = NewPlane(ctx, r.srv, Options{Replicas: r.reports, Metrics: m, NoClientsRetry: 50 * time.Millisecond})
		reporter, err := NewReporter(mgr.GetClient(), r.plane, opts)
		if err != nil {
			return err
		}
		for _, run := range []manager.Runnable{Runnable(r.srv, lis), &Feeder{Cache: mgr.GetCache(), Plane: r.plane}, reporter, r.reports} {
			if err := mgr.Add(run); err != nil {
				return err
			}
		}
		return nil
	})
	return r
}

// hostIP is an address of this machine other than loopback: the API
// server refuses loopback addresses in EndpointSlices, so the backends
// listen where a slice may point.
func hostIP(t *testing.T) string {
	t.Helper()
	ip, err := grpcecho.PodAddress()
	if err != nil {
		testbin.SkipOrFail(t, err.Error())
	}
	return ip
}

// writeStatus persists ro's status as the leader's reconciler does; ro
// then carries the new resourceVersion.
func writeStatus(t *testing.T, c client.Client, ro *v1alpha1.Rollout) {
	t.Helper()
	if err := c.Status().Update(context.Background(), ro); err != nil {
		t.Fatalf("write status of %s: %v", ro.Name, err)
	}
}

// The brief's scale-out: only the leader decides, every replica serves
// what it decided, from Rollout status. Real gRPC clients of two replicas
// see the split the status says, and both follow the next step; the
// leader's plane learns of the ACK through the tracker and wakes the
// reconciler.
func TestEveryReplicaServesTheLeadersPlan(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	ctx := context.Background()
	ro, p30 := servedRollout(t, c, ns)

	leader, follower := startReplica(t, ns, "leader"), startReplica(t, ns, "follower")
	clients := map[string]*replica{"leader": leader, "follower": follower}
	const n = 2000
	calls := map[string]func(int) map[string]int{}
	for name, r := range clients {
		cl, _ := xdstest.Client(t, r.addr, name, "reviews")
		calls[name] = func(k int) map[string]int { return xdstest.Calls(t, cl, k) }
		waitInForce(t, r, p30)
		xdstest.CheckShare(t, calls[name](n), n, 30, 4) // two clients, two weights
	}

	// The leader steps to 80%, persists, publishes, and waits for the ACK.
	p80 := advance(t, ro, 80)
	writeStatus(t, c, ro)
	if err := leader.plane.Publish(ctx, ro, p80); err != nil {
		t.Fatal(err)
	}
	if dp := answerOnWake(t, leader.plane, ro, p80.Version); dp.State != engine.AckAcknowledged {
		t.Errorf("leader's acknowledgement of 80%%: %+v; want acknowledged by the client", dp)
	}
	for name, r := range clients {
		waitInForce(t, r, p80)
		calls[name](200) // the client ACKs before its channel switches
		xdstest.CheckShare(t, calls[name](n), n, 80, 4)
	}
	follower.plane.mu.Lock()
	if len(follower.plane.waits) != 0 {
		t.Errorf("a follower runs %d waits; only the leader's reconciler starts them", len(follower.plane.waits))
	}
	follower.plane.mu.Unlock()

	// A spec edit the leader has not stepped yet: the status no longer
	// rebuilds, and every replica keeps serving 80%. A second Rollout,
	// written after it, shows when the edit has been seen.
	ro.Spec.Template.Spec.Containers[0].Image = "v3"
	if err := c.Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	ratings := newRollout(ns, "ratings", "ratings", "v1")
	if err := c.Create(ctx, ratings); err != nil {
		t.Fatal(err)
	}
	pRatings := advance(t, ratings, 0)
	writeStatus(t, c, ratings)
	for _, r := range clients {
		waitInForce(t, r, pRatings)
		if !inForce(r.srv, p80) {
			t.Error("a spec edit without a new status took the 80% plan away")
		}
	}

	// A deleted Rollout's routes go from every replica.
	if err := c.Delete(ctx, ro); err != nil {
		t.Fatal(err)
	}
	for name, r := range clients {
		poll.Until(t, name+": deleted rollout's plan withdrawn", func() bool { return !inForce(r.srv, p80) })
		if !inForce(r.srv, pRatings) {
			t.Errorf("%s: the other rollout's plan went too", name)
		}
	}
}

// servedRollout creates the reviews Rollout as the leader persists its
// decisions, healthy on v1 and then v2 at 30%, and the EndpointSlices
// the cluster derives for both revisions, pointing at real backends
// named stable and canary. It returns the Rollout and its plan.
func servedRollout(t *testing.T, c client.Client, ns string) (*v1alpha1.Rollout, plan.Plan) {
	t.Helper()
	ip := hostIP(t)
	ctx := context.Background()
	ro := newRollout(ns, "reviews", "reviews", "v1")
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	advance(t, ro, 0)
	writeStatus(t, c, ro)
	stableRev := ro.Status.StableRevision
	ro.Spec.Template.Spec.Containers[0].Image = "v2"
	if err := c.Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	p30 := advance(t, ro, 30)
	writeStatus(t, c, ro)
	canaryRev := ro.Status.CanaryRevision

	// The EndpointSlice controller's part, from the per-revision Services.
	for rev, name := range map[string]string{stableRev: "stable", canaryRev: "canary"} {
		backend := netip.MustParseAddrPort(xdstest.Backend(t, ip, name))
		es := slice(ns, "reviews-"+rev, "reviews", rev, discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{port("", int32(backend.Port()), corev1.ProtocolTCP)}, endpoint(ip, nil, nil))
		if err := c.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	return ro, p30
}

// waitInForce waits until the replica serves p and its clients, if any,
// have applied it.
func waitInForce(t *testing.T, r *replica, p plan.Plan) {
	t.Helper()
	poll.Until(t, "plan "+p.Version+" in force", func() bool {
		st := r.srv.Status(xds.PlanKey(&p), p.Version)
		return st.Current && (st.NoClients() || st.Converged())
	})
}
