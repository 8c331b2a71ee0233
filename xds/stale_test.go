package xds

import (
	"context"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
)

// A node that subscribes and never answers is listed as silent, with the
// time its response was sent, and the engine's observation carries it; a
// node that answers is not, and a silent node that goes away leaves the
// list (a client that never answers is never sent anything newer).
func TestSilentNodeIsReported(t *testing.T) {
	t.Parallel()
	srv, err := New(Options{Endpoints: staticFor(t, "reviews"), Logger: quiet})
	must(t, err)
	addr := serve(t, srv)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	must(t, srv.Publish(context.Background(), []plan.Plan{p}))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	answering := &adsClient{node: grpcNode("answering"), follow: true}
	must(t, answering.start(ctx, conn, map[kind][]string{kindListener: {"reviews"}}))
	silentCtx, silentGone := context.WithCancel(ctx)
	silent := &adsClient{node: grpcNode("silent"), follow: true, hold: func(*discoveryv3.DiscoveryResponse) bool { return true }}
	start := time.Now()
	must(t, silent.start(silentCtx, conn, map[kind][]string{kindListener: {"reviews"}}))
	poll.Within(t, 10*time.Second, "the silent node was sent the listener", func() bool {
		st := srv.Status("reviews", p.Version)
		return st.Subscribed == 2 && st.Acked == 1 && len(st.Silent) == 1
	})
	st := srv.Status("reviews", p.Version)
	if n := st.Silent[0]; n.Node.ID != "silent" || n.Since.Before(start) || n.Since.After(time.Now()) {
		t.Errorf("silent %+v, want the silent node since its response was sent", st.Silent)
	}
	dp := st.DataPlane()
	if dp.State != engine.AckPending || dp.Subscribed != 2 || dp.Acked != 1 || len(dp.Silent) != 1 || dp.Silent[0].Name != "silent" {
		t.Errorf("observation %+v, want pending, 2 subscribed, 1 acked, the silent node", dp)
	}
	if got := srv.Statuses(map[string]string{"reviews": p.Version})["reviews"]; len(got.Silent) != 1 {
		t.Errorf("Statuses: silent %+v", got.Silent)
	}

	silentGone()
	poll.Within(t, 10*time.Second, "the silent node is gone and the rest converged", func() bool {
		st := srv.Status("reviews", p.Version)
		return st.Converged() && len(st.Silent) == 0 && st.Subscribed == 1
	})
}
