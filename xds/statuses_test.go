package xds

import (
	"context"
	"reflect"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sluicehq/sluice/internal/poll"
)

// StatusChanged closes at every change a Status could show (a publish
// that moves a snapshot, a node subscribing and ACKing, a node leaving)
// and not at a publish that changes nothing.
func TestStatusChanged(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	reviews := canaryPlan("reviews", 10, []string{"reviews"})

	ch := e.srv.StatusChanged()
	if e.srv.StatusChanged() != ch {
		t.Error("two listeners before a change got different channels")
	}
	e.publish(t, reviews)
	closedWithin(t, "a publish", ch)

	ch = e.srv.StatusChanged()
	e.publish(t, reviews)
	select {
	case <-ch:
		t.Error("a publish that changed nothing closed the channel")
	default:
	}

	// A node subscribes and ACKs: every step closes the channel of the
	// moment, and a listener that keeps asking sees the ACK.
	c := &adsClient{node: grpcNode("proxyless"), follow: true}
	stop := e.startClient(t, c, map[kind][]string{kindListener: {"reviews"}})
	closedWithin(t, "a node subscribing", ch)
	waitChanged(t, e.srv, "the node's ACK", func() bool { return e.srv.Status(PlanKey(&reviews), reviews.Version).Converged() })

	ch = e.srv.StatusChanged()
	stop()
	closedWithin(t, "the node leaving", ch)
	if st := e.srv.Status(PlanKey(&reviews), reviews.Version); !st.NoClients() {
		t.Errorf("after the stream closed: %+v, want no clients", st)
	}
}

// waitChanged reads cond after each change until it holds, as a listener
// of StatusChanged does: take the channel, look, wait for it to close.
func waitChanged(t *testing.T, srv *Server, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := srv.StatusChanged()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: not seen within 20s of changes", what)
		}
	}
}

func closedWithin(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not close the StatusChanged channel", what)
	}
}

// Statuses gives, in one pass, the answer Status gives service by
// service, whatever the clients: an Envoy subscribed to everything (SotW
// wildcard), a delta Envoy, a gRPC client of one host, one that rejects
// that host's routes, and a service nobody routes.
func TestStatusesAgreesWithStatus(t *testing.T) {
	t.Parallel()
	e := newRawEnv(t)
	reviews, ratings := canaryPlan("reviews", 10, []string{"reviews"}), canaryPlan("ratings", 20, []string{"ratings"})
	e.publish(t, reviews, ratings)
	e.startClient(t, &adsClient{node: envoyNode("sidecar"), follow: true}, envoyInitial)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	must(t, (&deltaClient{node: envoyNode("delta")}).start(ctx, e.cc, [numKinds]map[string]string{}))
	e.startClient(t, &adsClient{node: grpcNode("proxyless"), follow: true}, map[kind][]string{kindListener: {"reviews"}})
	e.startClient(t, &adsClient{node: grpcNode("nacker"), reject: func(*discoveryv3.DiscoveryResponse) string { return "bad route" }},
		map[kind][]string{kindListener: {"ratings"}})
	e.converged(t, reviews, 3)
	poll.Within(t, 10*time.Second, "the NACK of ratings", func() bool { return len(e.srv.Status("ratings", ratings.Version).Rejected) == 1 })

	versions := map[string]string{"reviews": reviews.Version, "ratings": ratings.Version, "details": "0123456789abcdef"}
	got := e.srv.Statuses(versions)
	if len(got) != len(versions) {
		t.Fatalf("Statuses answered %d services, want %d", len(got), len(versions))
	}
	for svc, v := range versions {
		if want := e.srv.Status(svc, v); !reflect.DeepEqual(got[svc], want) {
			t.Errorf("Statuses[%s] = %+v\nStatus      = %+v", svc, got[svc], want)
		}
	}
	if st := got["ratings"]; st.Subscribed != 3 || len(st.Rejected) != 1 {
		t.Errorf("ratings: %+v, want the two Envoys and the rejecting gRPC client", st)
	}
}
