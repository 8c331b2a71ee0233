package xdsplane

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// newServer is an xDS server that serves nobody: publishing and the
// tracker's answers work without a listener, and no client ever connects.
func newServer(t *testing.T) *xds.Server {
	t.Helper()
	srv, err := xds.New(xds.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// inForce reports whether p is the version the server currently serves
// for its service.
func inForce(srv *xds.Server, p plan.Plan) bool {
	return srv.Status(xds.PlanKey(&p), p.Version).Current
}

func withRV(ro *v1alpha1.Rollout, rv string) *v1alpha1.Rollout {
	ro = ro.DeepCopy()
	ro.ResourceVersion = rv
	return ro
}

func TestNewerRV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prev, next string
		want       bool
	}{
		{"5", "6", true},
		{"5", "5", true}, // the same status again
		{"6", "5", false},
		{"10", "9", false}, // numbers, not strings
		{"9", "10", true},
		{"", "5", true},
		{"abc", "1", true}, // unparsable: the latest arrival wins
		{"5", "abc", true},
	}
	for _, tc := range tests {
		if got := newerRV(tc.prev, tc.next); got != tc.want {
			t.Errorf("newerRV(%q, %q) = %v, want %v", tc.prev, tc.next, got, tc.want)
		}
	}
}

// An informer event for an older status, arriving after the leader
// published a newer one, must not turn the traffic back.
func TestPlaneNeverServesAnOlderStatus(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	pl := NewPlane(t.Context(), srv, Options{})
	ro, p30 := rolloutAt(t, "shop", "reviews", "reviews", 30, "100")
	ro80 := ro.DeepCopy()
	p80 := advance(t, ro80, 80)
	leader := func(ro *v1alpha1.Rollout, p plan.Plan) func() error {
		return func() error { return pl.Publish(context.Background(), ro, p) }
	}
	feeder := func(ro *v1alpha1.Rollout, p plan.Plan) func() error {
		return func() error {
			return pl.update(context.Background(), change{key: keyOf(ro), plan: p, rv: ro.ResourceVersion})
		}
	}
	tests := []struct {
		name string
		do   func() error
		want plan.Plan
	}{
		{"leader publishes 30% at 100", leader(withRV(ro, "100"), p30), p30},
		{"80% from an older status (99) is ignored", feeder(withRV(ro80, "99"), p80), p30},
		{"leader publishes 80% at 101", leader(withRV(ro80, "101"), p80), p80},
		{"late informer event for 30% at 100 is ignored", feeder(withRV(ro, "100"), p30), p80},
		{"the same status again changes nothing", feeder(withRV(ro80, "101"), p80), p80},
		{"unparsable resourceVersion: the latest arrival wins", leader(withRV(ro, "x"), p30), p30},
	}
	for _, tc := range tests {
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		other := p30
		if tc.want.Version == p30.Version {
			other = p80
		}
		if !inForce(srv, tc.want) || inForce(srv, other) {
			t.Errorf("%s: weight %s in force, want %s", tc.name, weightInForce(srv, p30, p80), weightOf(tc.want))
		}
	}
}

func weightOf(p plan.Plan) string {
	for _, d := range p.Hosts[0].Routes[len(p.Hosts[0].Routes)-1].Destinations {
		if d.Subset == plan.Canary {
			return fmt.Sprintf("%d%%", d.Weight)
		}
	}
	return "0%"
}

func weightInForce(srv *xds.Server, ps ...plan.Plan) string {
	var in []string
	for _, p := range ps {
		if inForce(srv, p) {
			in = append(in, weightOf(p))
		}
	}
	return "[" + strings.Join(in, " ") + "]"
}

// One Rollout's plan that the server refuses (a host another Rollout
// routes) fails its own publish and holds back nobody else's.
func TestPlaneBadPlanFailsAlone(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	pl := NewPlane(t.Context(), srv, Options{AckWithoutClients: true})
	ctx := context.Background()
	reviews, pReviews := rolloutAt(t, "shop", "reviews", "reviews", 30, "10")
	thief, pThief := rolloutAt(t, "shop", "thief", "reviews", 30, "11")
	ratings, pRatings := rolloutAt(t, "shop", "ratings", "ratings", 30, "12")

	if err := pl.Publish(ctx, reviews, pReviews); err != nil {
		t.Fatal(err)
	}
	if err := pl.Publish(ctx, thief, pThief); err == nil || !strings.Contains(err.Error(), "thief") {
		t.Fatalf("publishing a second plan for host reviews: %v, want an error naming the rollout", err)
	}
	if err := pl.Publish(ctx, ratings, pRatings); err != nil {
		t.Fatalf("a good plan after a bad one: %v", err)
	}
	for _, p := range []plan.Plan{pReviews, pRatings} {
		if !inForce(srv, p) {
			t.Errorf("%s: plan not in force", p.Service)
		}
	}
	if st := srv.Status(xds.PlanKey(&pThief), pThief.Version); st.Published {
		t.Errorf("the refused plan is published: %+v", st)
	}
	// Nothing stands in for a plan that is not out.
	if dp, err := pl.Acknowledgement(ctx, thief, pThief.Version); err != nil || dp.State != engine.AckPending {
		t.Errorf("acknowledgement of the refused plan: %+v, %v; want pending", dp, err)
	}
}

func TestPlaneForget(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	fallback := controller.NewAcceptedOnWrite(noWrite)
	pl := NewPlane(t.Context(), srv, Options{Fallback: fallback})
	ctx := context.Background()
	reviews, pReviews := rolloutAt(t, "shop", "reviews", "reviews", 30, "10")
	ratings, pRatings := rolloutAt(t, "shop", "ratings", "ratings", 30, "11")
	for _, x := range []struct {
		ro *v1alpha1.Rollout
		p  plan.Plan
	}{{reviews, pReviews}, {ratings, pRatings}} {
		if err := pl.Publish(ctx, x.ro, x.p); err != nil {
			t.Fatal(err)
		}
		if err := fallback.Publish(ctx, x.ro, x.p); err != nil {
			t.Fatal(err)
		}
	}
	pl.Forget(types.NamespacedName{Namespace: "shop", Name: "reviews"})
	if inForce(srv, pReviews) || !inForce(srv, pRatings) {
		t.Errorf("after Forget(reviews): reviews in force %v, ratings %v; want only ratings", inForce(srv, pReviews), inForce(srv, pRatings))
	}
	if dp, _ := fallback.Acknowledgement(ctx, reviews, pReviews.Version); dp.State != engine.AckPending {
		t.Errorf("the fallback still acknowledges the forgotten rollout: %+v", dp)
	}
}

// noWrite is the Publisher behind a test's AcceptedOnWrite: every write
// succeeds.
var noWrite = controller.PublisherFunc(func(context.Context, *v1alpha1.Rollout, plan.Plan) error { return nil })

// With no xDS client, the acknowledgement is what stands in for one: the
// Fallback (the accepted VirtualService write), or AckWithoutClients, and
// only for the version that is out.
func TestAcknowledgementWithoutClients(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     func() Options
		written  bool // the Fallback wrote the version
		askOther bool // ask about a version never published
		want     engine.AckState
	}{
		{"nothing stands in", func() Options { return Options{} }, false, false, engine.AckPending},
		{"AckWithoutClients", func() Options { return Options{AckWithoutClients: true} }, false, false, engine.AckAcknowledged},
		{"fallback has not written it", fallbackOpts, false, false, engine.AckPending},
		{"fallback wrote it", fallbackOpts, true, false, engine.AckAcknowledged},
		{"fallback wins over AckWithoutClients", func() Options { o := fallbackOpts(); o.AckWithoutClients = true; return o }, false, false, engine.AckPending},
		{"a version that is not out", func() Options { return Options{AckWithoutClients: true} }, false, true, engine.AckPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := tc.opts()
			pl := NewPlane(t.Context(), newServer(t), opts)
			ctx := context.Background()
			ro, p := rolloutAt(t, "shop", "reviews", "reviews", 30, "7")
			if err := pl.Publish(ctx, ro, p); err != nil {
				t.Fatal(err)
			}
			if tc.written {
				if err := opts.Fallback.(*controller.AcceptedOnWrite).Publish(ctx, ro, p); err != nil {
					t.Fatal(err)
				}
			}
			version := p.Version
			if tc.askOther {
				version = "0123456789abcdef"
			}
			dp, err := pl.Acknowledgement(ctx, ro, version)
			if err != nil {
				t.Fatal(err)
			}
			if dp.State != tc.want || dp.Version != version {
				t.Errorf("acknowledgement %+v, want %s of %s", dp, tc.want, version)
			}
		})
	}
}

func fallbackOpts() Options { return Options{Fallback: controller.NewAcceptedOnWrite(noWrite)} }

// With no xDS client, the background wait keeps asking the Fallback and
// wakes the reconciler once it acknowledges: the VirtualService write
// counts as the acknowledgement without waiting for the next poll.
func TestWakeWhenTheFallbackAcknowledges(t *testing.T) {
	t.Parallel()
	fallback := controller.NewAcceptedOnWrite(noWrite)
	pl := NewPlane(t.Context(), newServer(t), Options{Fallback: fallback, NoClientsRetry: 10 * time.Millisecond})
	ctx := context.Background()
	ro, p := rolloutAt(t, "shop", "reviews", "reviews", 30, "7")
	// The plane first: its wait starts before the write it stands in
	// for, and must keep asking until that write is done.
	if err := pl.Publish(ctx, ro, p); err != nil {
		t.Fatal(err)
	}
	if err := fallback.Publish(ctx, ro, p); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-pl.Wake():
		if ev.Object.GetNamespace() != "shop" || ev.Object.GetName() != "reviews" {
			t.Errorf("woke %s/%s, want shop/reviews", ev.Object.GetNamespace(), ev.Object.GetName())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no wake after the fallback acknowledged")
	}
	if dp, err := pl.Acknowledgement(ctx, ro, p.Version); err != nil || dp.State != engine.AckAcknowledged {
		t.Errorf("after the wake: %+v, %v; want acknowledged", dp, err)
	}
	// The reconciler has its answer: publishing the version again starts
	// no wait, which would wake it at once, and again, in a loop.
	if err := pl.Publish(ctx, ro, p); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pl.Wake():
		t.Error("woken again for a version already answered")
	case <-time.After(500 * time.Millisecond):
	}
}

// The plane answers on the write (controller.WriteAcknowledger) only while
// no xDS client of the service is connected and what stands in for one
// answers on the write: with a client, its ACK comes later, and the
// reconciler must persist the plan before it goes out.
func TestAcknowledgesOnWriteOnlyWithoutClients(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   Options
		client bool
		want   bool
	}{
		{name: "accepted write stands in", opts: fallbackOpts(), want: true},
		{name: "AckWithoutClients", opts: Options{AckWithoutClients: true}, want: true},
		{name: "nothing stands in", opts: Options{}, want: false},
		{name: "a fallback that answers later", opts: Options{Fallback: laterFallback{}}, want: false},
		{name: "a client connected", opts: fallbackOpts(), client: true, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t)
			pl := NewPlane(t.Context(), srv, tc.opts)
			ctx := context.Background()
			ro, p := rolloutAt(t, "shop", "reviews", "reviews", 30, "7")
			if err := pl.Publish(ctx, ro, p); err != nil {
				t.Fatal(err)
			}
			if tc.client {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				go func() { _ = Runnable(srv, lis).Start(t.Context()) }()
				startRawClient(t, lis.Addr().String(), "proxyless", "reviews")
				poll.Until(t, "the client subscribed", func() bool {
					return srv.Status(xds.PlanKey(&p), p.Version).Subscribed > 0
				})
			}
			if got := pl.AcknowledgesOnWrite(ro); got != tc.want {
				t.Errorf("AcknowledgesOnWrite %v, want %v", got, tc.want)
			}
		})
	}
}

// laterFallback answers like a router whose answer comes later.
type laterFallback struct{}

func (laterFallback) Acknowledgement(_ context.Context, _ *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	return engine.DataPlane{Version: version}, nil
}
