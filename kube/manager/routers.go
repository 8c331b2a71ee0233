package manager

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/gatewayapi"
	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// gatewayRouter is the Gateway API router: a cached Writer (leader only)
// that watches, in a cache of its own, only the routes it wrote, and only
// once a Rollout names a route of a kind, so the controller starts and
// runs without the Gateway API CRDs; a Rollout that names a route then
// says in its status that they are missing.
func (c *Controller) gatewayRouter() (*gatewayapi.Publisher, error) {
	mgr := c.mgr
	ca, err := gatewayapi.NewCache(mgr.GetConfig(), c.routerCacheOptions())
	if err != nil {
		return nil, err
	}
	w := gatewayapi.NewCachedWriter(istioClient{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient()}, ca, c.log.WithName("gateway-api"))
	if err := mgr.Add(w); err != nil {
		return nil, fmt.Errorf("add gateway API writer: %w", err)
	}
	pub := gatewayapi.NewPublisher(w)
	if err := mgr.Add(c.routeSweep(pub)); err != nil {
		return nil, fmt.Errorf("add gateway API route sweep: %w", err)
	}
	return pub, nil
}

// routeSweep runs once each time this replica starts leading: the routes
// still holding the record of a Rollout deleted while no controller ran
// (or before this leader wrote its routes) get back what Sluice changed.
// A failed sweep is tried again, every sweepRetry, until one succeeds.
func (c *Controller) routeSweep(pub *gatewayapi.Publisher) manager.Runnable {
	exists := gatewayapi.RolloutExists(c.mgr.GetAPIReader())
	log := c.log.WithName("gateway-api")
	// A manager.RunnableFunc needs leader election.
	return manager.RunnableFunc(func(ctx context.Context) error {
		for {
			err := pub.Sweep(ctx, c.cfg.WatchNamespaces, exists)
			if err == nil {
				return nil
			}
			log.Error(err, "sweeping the routes of deleted Rollouts; trying again", "in", sweepRetry)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(sweepRetry):
			}
		}
	})
}

// sweepRetry is how long a failed route sweep waits before the next try.
const sweepRetry = 30 * time.Second

// routerCacheOptions are the options of a router's cache of its own:
// the manager's scheme, REST mapper, HTTP client and namespaces.
func (c *Controller) routerCacheOptions() cache.Options {
	mgr := c.mgr
	co := cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient()}
	if len(c.cfg.WatchNamespaces) > 0 {
		co.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range c.cfg.WatchNamespaces {
			co.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return co
}

// istioWriter is the Istio router's cached Writer (leader only). Like the
// Gateway API's, it watches its objects in a cache of its own, so the
// controller starts and runs without Istio's CRDs: it logs once that they
// are missing, a Rollout that routes through Istio says so in its
// Reconciled condition, and both heal when the CRDs are installed.
func (c *Controller) istioWriter() (*istio.Writer, error) {
	mgr := c.mgr
	ca, err := istio.NewCache(mgr.GetConfig(), c.routerCacheOptions())
	if err != nil {
		return nil, err
	}
	w := istio.NewCachedWriter(istioClient{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient()}, ca, c.log.WithName("istio")).StartsCache()
	if err := mgr.Add(w); err != nil {
		return nil, fmt.Errorf("add istio writer: %w", err)
	}
	return w, nil
}

// routerFallback is the xDS plane's Fallback: what answers for a plan
// version while no xDS client subscribes to its service. For a Rollout
// whose plan goes to Istio it is the accepted VirtualService write, or
// without the Istio writer nothing (pending: a step never completes
// unseen). Any other Rollout gives the plane nothing to wait for: its
// routers (the Gateway API routes' gateways) answer for themselves among
// the reconciler's Acknowledgers. The plane passes a deleted Rollout's
// Forget on to it.
type routerFallback struct {
	istio  *controller.AcceptedOnWrite // nil without the Istio writer
	writer *istio.Writer
}

func (f routerFallback) Acknowledgement(ctx context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	switch {
	case !controller.UsesIstio(ro):
		return engine.DataPlane{Version: version, State: engine.AckAcknowledged}, nil
	case f.istio == nil:
		return engine.DataPlane{Version: version, State: engine.AckPending}, nil
	}
	return f.istio.Acknowledgement(ctx, ro, version)
}

// AcknowledgesOnWrite implements controller.WriteAcknowledger: it
// answers at once wherever Acknowledgement does not wait for the Istio
// writer's answer, and there that answer is the write.
func (f routerFallback) AcknowledgesOnWrite(ro *v1alpha1.Rollout) bool {
	return !controller.UsesIstio(ro) || f.istio != nil
}

func (f routerFallback) Forget(key types.NamespacedName) {
	if f.istio != nil {
		f.istio.Forget(key)
		f.writer.Forget(key)
	}
}
