package xds

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/plan"
)

// TestStageWithoutClients: with no stream open, a publish builds no
// snapshot (the whole set is translated once, when the first node
// identifies), still refuses what a publish would refuse, and the first
// node is served the latest plans.
func TestStageWithoutClients(t *testing.T) {
	t.Parallel()
	eps := NewStatic()
	stable, canary := xdstest.Backend(t, "127.0.0.1", "stable"), xdstest.Backend(t, "127.0.0.1", "canary")
	must(t, eps.Set("", "reviews", revStable, stable))
	must(t, eps.Set("", "reviews", revCanary, canary))
	must(t, eps.Set("", "ratings", revStable, stable))
	must(t, eps.Set("", "ratings", revCanary, canary))
	srv, err := New(Options{Endpoints: eps, Registerer: prometheus.NewRegistry(), Logger: quiet, StageWithoutClients: true})
	must(t, err)
	addr := serve(t, srv)
	publish := func(plans ...plan.Plan) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Publish(ctx, plans)
	}
	count := func(result string) float64 { return testutil.ToFloat64(srv.metrics.publishes.WithLabelValues(result)) }

	ratings := canaryPlan("ratings", 0, []string{"ratings"})
	for _, w := range []int32{0, 20, 60} {
		must(t, publish(canaryPlan("reviews", w, []string{"reviews"}), ratings))
	}
	if n := count("pushed"); n != 0 {
		t.Errorf("publishes_total{pushed} = %v with no client, want 0 (every publish staged)", n)
	}
	if n := count("staged"); n != 3 {
		t.Errorf("publishes_total{staged} = %v, want 3", n)
	}
	if v := srv.Versions(GroupGRPC); len(v) != 0 {
		t.Errorf("a snapshot was built with no client: versions %v", v)
	}

	// Each is refused by a server that publishes whole; staged, too.
	good := canaryPlan("reviews", 60, []string{"reviews"})
	bad := []struct {
		name  string
		plans []plan.Plan
	}{
		{"plan that does not check", []plan.Plan{edit(good, func(p *plan.Plan) { p.Hosts[0].Routes[0].Destinations = split(200) }), ratings}},
		{"host routed by two services", []plan.Plan{good, canaryPlan("ratings", 0, []string{"ratings", "reviews"})}},
		{"two plans of one service", []plan.Plan{good, good}},
		{"header regex that does not compile", []plan.Plan{canaryPlan("reviews", 60, []string{"reviews"},
			toCanary("bad-regex", header("end-user", plan.HeaderRegex, "("))), ratings}},
	}
	for _, tc := range bad {
		if err := publish(tc.plans...); err == nil {
			t.Errorf("%s: staged without an error", tc.name)
		}
	}
	if n := count("error"); n != float64(len(bad)) {
		t.Errorf("publishes_total{error} = %v, want %d", n, len(bad))
	}

	latest := canaryPlan("reviews", 100, []string{"reviews"})
	must(t, publish(latest, ratings))
	// Status answers for the staged set, as it would for a published one.
	older := canaryPlan("reviews", 60, []string{"reviews"})
	for _, tc := range []struct {
		name string
		st   Status
		want bool
	}{
		{"service, staged version", srv.Status(PlanKey(&latest), latest.Version), true},
		{"host, staged version", srv.HostStatus("reviews", latest.Version), true},
		{"every service, staged version", srv.Statuses(map[string]string{PlanKey(&latest): latest.Version})[PlanKey(&latest)], true},
		{"service, an older staged version", srv.Status(PlanKey(&older), older.Version), false},
	} {
		if tc.st.Current != tc.want || tc.st.Published != tc.want || !tc.st.NoClients() {
			t.Errorf("%s: status %+v, want published and current %v, no clients", tc.name, tc.st, tc.want)
		}
	}
	c, _ := xdstest.Client(t, addr, "first", "reviews")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if st, err := srv.Wait(ctx, PlanKey(&latest), latest.Version); err != nil {
		t.Fatalf("Wait for the staged plan: %v (status %+v)", err, st)
	}
	if got := xdstest.Calls(t, c, 20); got["canary"] != 20 {
		t.Errorf("served by %v, want the latest staged plan (all canary)", got)
	}
	if n := count("pushed"); n < 1 {
		t.Errorf("publishes_total{pushed} = %v after a client identified, want at least 1", n)
	}
	// With a client connected, a publish goes out at once.
	back := canaryPlan("reviews", 0, []string{"reviews"})
	must(t, publish(back, ratings))
	if st, err := srv.Wait(ctx, PlanKey(&back), back.Version); err != nil {
		t.Fatalf("Wait with a client connected: %v (status %+v)", err, st)
	}
	if got := xdstest.Calls(t, c, 20); got["stable"] != 20 {
		t.Errorf("served by %v, want the stable revision", got)
	}
}

// TestIdle: a server is idle until a stream opens and again once the
// last one closes.
func TestIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if !e.srv.Idle() {
		t.Fatal("Idle() = false before any client")
	}
	p := canaryPlan("reviews", 0, []string{"reviews"})
	e.publish(t, p)
	_, cc := e.client(t, "idle", "reviews")
	e.waitAck(t, p)
	if e.srv.Idle() {
		t.Error("Idle() = true with a client connected")
	}
	must(t, cc.Close())
	deadline := time.Now().Add(20 * time.Second)
	for !e.srv.Idle() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !e.srv.Idle() {
		t.Error("Idle() = false after the only client closed")
	}
}
