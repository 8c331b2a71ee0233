package xdsplane

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// readReport reads a replica's report from the API server; nil when
// there is none.
func readReport(t *testing.T, c client.Client, ns, replica string) *Report {
	t.Helper()
	cm := &corev1.ConfigMap{}
	err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: ReportName(replica)}, cm)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseReport(cm)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[LabelReport] != "true" {
		t.Errorf("report labels %v, want %s=true", cm.Labels, LabelReport)
	}
	return r
}

// withCanaryWeight is p with w% to the canary on its default routes.
func withCanaryWeight(t *testing.T, p plan.Plan, w int32) plan.Plan {
	t.Helper()
	p.Hosts = slices.Clone(p.Hosts)
	for i := range p.Hosts {
		routes := slices.Clone(p.Hosts[i].Routes)
		routes[len(routes)-1].Destinations = []plan.Destination{{Subset: plan.Stable, Weight: 100 - w}, {Subset: plan.Canary, Weight: w}}
		p.Hosts[i].Routes = routes
	}
	p.Seal()
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	return p
}

// The report is written at start, follows the clients, writes a burst of
// changes at most once per MinInterval, is renewed while nothing
// changes, and is deleted when the replica stops.
func TestReporter(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	ctx := context.Background()
	r := startReplica(t, ns, "r1")
	ro, p := rolloutAt(t, ns, "reviews", "reviews", 30, "1")
	if err := r.plane.Publish(ctx, ro, p); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the first report, without clients", func() bool {
		rep := readReport(t, c, ns, "r1")
		return rep != nil && rep.Replica == "r1" && len(rep.Rollouts) == 0
	})

	key := ns + "/reviews"
	startRawClient(t, r.addr, "proxyless", "reviews")
	poll.Until(t, "the client in the report", func() bool {
		rep := readReport(t, c, ns, "r1")
		return rep != nil && rep.Rollouts[key].Clients == 1 && rep.Rollouts[key].Plan == p.Version
	})

	// Twenty plans, one every 20ms, each a change the client answers:
	// a write per change would fit between them; the report is written at
	// most once per MinInterval.
	writes := func() float64 { return testutil.ToFloat64(r.metrics.writes.WithLabelValues("ok")) }
	before, start := writes(), time.Now()
	last := p
	for i := range 20 {
		last = withCanaryWeight(t, p, int32(31+i))
		if err := r.plane.Publish(ctx, withRV(ro, strconv.Itoa(2+i)), last); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	poll.Until(t, "the last plan in the report", func() bool {
		rep := readReport(t, c, ns, "r1")
		return rep != nil && rep.Rollouts[key].Plan == last.Version
	})
	n, elapsed := int(writes()-before), time.Since(start)
	t.Logf("20 changes in %s cost %d writes", elapsed.Round(time.Millisecond), n)
	if bound := 2 + int(elapsed/replicaMinInterval); n > bound {
		t.Errorf("%d writes in %s, want at most %d: one per MinInterval (%s)", n, elapsed, bound, replicaMinInterval)
	}

	// Nothing changes: the heartbeat renews the same entries. A write
	// with other entries (the client's answer, or the node turning silent,
	// landing after the read above) is a change, not a renewal: the
	// renewal is looked for from there.
	prev := readReport(t, c, ns, "r1")
	poll.Until(t, "a renewal", func() bool {
		rep := readReport(t, c, ns, "r1")
		switch {
		case rep == nil:
			return false
		case !maps.EqualFunc(rep.Rollouts, prev.Rollouts, ReportEntry.equal):
			prev = rep
			return false
		}
		return rep.RenewTime.After(prev.RenewTime)
	})

	r.stop()
	if rep := readReport(t, c, ns, "r1"); rep != nil {
		t.Errorf("the report outlives its replica: %+v", rep)
	}
}

// Reports that stop being renewed are deleted, and the waits on their
// Rollouts woken; the live replicas' own reports stay.
func TestStaleReportsAreDeleted(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	ctx := context.Background()
	leader, follower := startReplica(t, ns, "leader"), startReplica(t, ns, "follower")
	key := types.NamespacedName{Namespace: ns, Name: "reviews"}
	entries := map[string]ReportEntry{key.String(): {Plan: "p", Clients: 1, State: statePending}}
	// A replica that died a minute ago, and one whose short heartbeat
	// stops now.
	for _, cm := range []*corev1.ConfigMap{
		reportMap(t, ns, "dead", time.Now().Add(-time.Minute), time.Second, entries),
		reportMap(t, ns, "silent", time.Now(), 200*time.Millisecond, entries),
	} {
		if err := c.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, "the silent replica's report to count", func() bool { return len(leader.reports.answers(key)) == 1 })
	woken := leader.reports.changed(key)
	poll.Until(t, "the stale reports to go", func() bool {
		return readReport(t, c, ns, "dead") == nil && readReport(t, c, ns, "silent") == nil
	})
	if !closed(woken) {
		t.Error("the waits on the stale reports' Rollout were not woken")
	}
	if a := leader.reports.answers(key); len(a) != 0 {
		t.Errorf("answers after the stale reports went: %+v", a)
	}
	for _, r := range []*replica{leader, follower} {
		if readReport(t, c, ns, r.name) == nil {
			t.Errorf("the live replica %s's report was deleted", r.name)
		}
	}
}

// Two replicas share one API server; the only clients are on the
// follower. The leader's acknowledgement comes from the follower's
// report: a real gRPC client's ACK, then a NACK of another node, which
// the leader reports as the follower's.
func TestAcknowledgementAcrossReplicas(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	ctx := context.Background()
	ro, p30 := servedRollout(t, c, ns)
	leader, follower := startReplica(t, ns, "leader"), startReplica(t, ns, "follower")
	xdstest.Client(t, follower.addr, "proxyless", "reviews")
	waitInForce(t, follower, p30)

	// The leader steps to 80%, persists and publishes; the follower serves
	// it from status, its client ACKs, its report says so.
	p80 := advance(t, ro, 80)
	writeStatus(t, c, ro)
	if err := leader.plane.Publish(ctx, ro, p80); err != nil {
		t.Fatal(err)
	}
	dp := answerOnWake(t, leader.plane, ro, p80.Version)
	if st := leader.srv.Status(xds.PlanKey(&p80), p80.Version); !st.NoClients() {
		t.Fatalf("the leader has clients of its own: %+v", st)
	}
	if dp.State != engine.AckAcknowledged {
		t.Fatalf("leader's acknowledgement of 80%%: %+v; want acknowledged through the follower's report", dp)
	}
	if n := testutil.ToFloat64(leader.metrics.answers.WithLabelValues(string(engine.AckAcknowledged), viaReplicas)); n != 1 {
		t.Errorf("plan_answers_total{Acknowledged,replicas} = %v, want 1", n)
	}

	// A node on the follower that cannot apply the routes: the next plan
	// is rejected, in the follower's name.
	const reason = "listener reviews: unsupported HTTP filter"
	startRawClient(t, follower.addr, "nacker", "reviews").nackWith(reason)
	next := advance(t, ro, 0)
	writeStatus(t, c, ro)
	if err := leader.plane.Publish(ctx, ro, next); err != nil {
		t.Fatal(err)
	}
	dp = answerOnWake(t, leader.plane, ro, next.Version)
	if dp.State != engine.AckRejected {
		t.Fatalf("leader's acknowledgement of the plan the follower's node NACKed: %+v; want rejected", dp)
	}
	for _, want := range []string{"replica follower", "nacker", reason} {
		if !strings.Contains(dp.Message, want) {
			t.Errorf("rejection %q does not name %q", dp.Message, want)
		}
	}
}

// answerOnWake plays the leader's reconciler: at each wake of the plane
// it asks for the acknowledgement of version, until that is final (a
// partial answer wakes it too: a node subscribed, applied, fell silent),
// and returns it.
func answerOnWake(t *testing.T, pl *Plane, ro *v1alpha1.Rollout, version string) engine.DataPlane {
	t.Helper()
	return wakeUntil(t, pl, ro, version, "a final answer", func(dp engine.DataPlane) bool { return dp.State != engine.AckPending })
}

// wakeUntil plays the leader's reconciler: at each wake of the plane it
// asks for the acknowledgement of version, until cond holds of it, and
// returns it. Only wakes bring a look: a plane that fails to wake fails
// the test.
func wakeUntil(t *testing.T, pl *Plane, ro *v1alpha1.Rollout, version, what string, cond func(engine.DataPlane) bool) engine.DataPlane {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var dp engine.DataPlane
	for {
		select {
		case ev := <-pl.Wake():
			if ev.Object.GetName() != ro.Name || ev.Object.GetNamespace() != ro.Namespace {
				t.Errorf("woke %s/%s, want %s/%s", ev.Object.GetNamespace(), ev.Object.GetName(), ro.Namespace, ro.Name)
			}
		case <-deadline:
			t.Fatalf("the plane never woke the reconciler with %s of %s; last answer %+v", what, version, dp)
		}
		var err error
		if dp, err = pl.Acknowledgement(context.Background(), ro, version); err != nil {
			t.Fatal(err)
		}
		if cond(dp) {
			return dp
		}
	}
}
