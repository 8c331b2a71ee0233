package gatewayapi

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestLettingGoWithoutTheWriter: the process that wrote a route is gone
// (a controller restarted, or another replica leads now), and the
// Rollout it wrote for stopped naming the route, or was deleted, while no
// controller ran. The route's record is enough for the next one: a
// Rollout moved to Istio gets its route back at its first publish, a
// deleted Rollout's route at the new leader's sweep, or at Forget when
// the deletion is seen; each time the route is the user's again, byte
// for byte, labels and annotations included.
func TestLettingGoWithoutTheWriter(t *testing.T) {
	c := env.Client(t)
	router := v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: "reviews"}}}}
	// written runs a Rollout until its 20% step is in the user's route,
	// through a harness whose Publisher is then dropped.
	written := func(t *testing.T) (*harness, types.NamespacedName) {
		key := userRoute(t, c, "sluice-letgo-")
		ro := newRollout(key.Namespace, "reviews", "reviews:v1", reviewsPort, router, setWeight(20), pauseFor(time.Minute))
		h := newHarness(t, c, ro, HTTPRoute, "reviews")
		h.drive("healthy", h.accepting, healthy)
		h.setImage("reviews:v2")
		h.drive("at 20%", h.accepting, stepAcked(1))
		if _, ok := h.live().GetAnnotations()[AnnotationManagedRules]; !ok {
			t.Fatal("no record on the route after the write")
		}
		return h, key
	}
	// asApplied is the user's route as applied, under another name, so
	// that the API server's defaults are in it.
	asApplied := func(t *testing.T, ns string) types.NamespacedName {
		twin := userHTTPRoute()
		twin.Namespace, twin.Name = ns, "reviews-as-applied"
		gitopsApply(t, c, twin)
		return client.ObjectKeyFromObject(twin)
	}
	released := func(t *testing.T, h *harness, ns string) {
		t.Helper()
		want := routeOf(t, c, HTTPRoute, asApplied(t, ns))
		waitFor(t, "the route released", 10*time.Second, func() bool {
			return mustJSON(t, h.live().Object["spec"]) == mustJSON(t, want.Object["spec"])
		})
		checkReleased(t, h.live(), want)
	}
	newProcess := func(h *harness) *Publisher {
		pub := NewPublisher(NewWriter(c))
		h.pub, h.r.Publisher, h.r.Acknowledger = pub, pub, pub
		return pub
	}

	t.Run("router removed", func(t *testing.T) {
		t.Parallel()
		h, key := written(t)
		newProcess(h)
		h.ro.Spec.Service.Routers = []v1alpha1.Router{{Istio: &v1alpha1.IstioRouter{}}}
		if err := c.Update(context.Background(), h.ro); err != nil {
			t.Fatal(err)
		}
		h.mustReconcile()
		released(t, h, key.Namespace)
	})
	t.Run("deleted, then a new leader sweeps", func(t *testing.T) {
		t.Parallel()
		h, key := written(t)
		if err := c.Delete(context.Background(), h.ro); err != nil {
			t.Fatal(err)
		}
		pub := newProcess(h)
		if err := pub.Sweep(context.Background(), []string{key.Namespace}, RolloutExists(c)); err != nil {
			t.Fatal(err)
		}
		released(t, h, key.Namespace)
	})
	t.Run("deleted, seen by a process that did not write", func(t *testing.T) {
		t.Parallel()
		h, key := written(t)
		if err := c.Delete(context.Background(), h.ro); err != nil {
			t.Fatal(err)
		}
		newProcess(h).Forget(client.ObjectKeyFromObject(h.ro))
		released(t, h, key.Namespace)
	})
	t.Run("a sweep leaves a live Rollout's route alone", func(t *testing.T) {
		t.Parallel()
		h, key := written(t)
		before := h.live()
		pub := newProcess(h)
		if err := pub.Sweep(context.Background(), []string{key.Namespace}, RolloutExists(c)); err != nil {
			t.Fatal(err)
		}
		if after := h.live(); after.GetResourceVersion() != before.GetResourceVersion() {
			t.Errorf("the sweep wrote the route of a Rollout that exists: resourceVersion %s → %s", before.GetResourceVersion(), after.GetResourceVersion())
		}
	})
}
