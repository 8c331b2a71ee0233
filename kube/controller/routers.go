package controller

import (
	"context"
	"errors"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A Rollout's spec.service.routers name where its plan is written besides
// Sluice's own xDS: Istio, Gateway API routes, or none (replicas). Each
// router is a Publisher (and, when it has an answer of its own, an
// Acknowledger) that serves the Rollouts naming it and leaves the others
// alone; the reconciler publishes through all of them (Publishers) and
// counts a plan version once all of them acknowledge it (Acknowledgers).

// UsesIstio reports whether ro's plan is written to Istio: it lists no
// routers (Istio alone, as before routers existed), or an istio one.
func UsesIstio(ro *v1alpha1.Rollout) bool { return ro.Spec.Service.UsesIstio() }

// ForRouter publishes through Publisher only for the Rollouts Uses
// selects; for the others Publish does nothing and succeeds. Wrapped in
// AcceptedOnWrite, it acknowledges those others at once: that router has
// nothing to hold their steps for.
type ForRouter struct {
	Uses      func(*v1alpha1.Rollout) bool
	Publisher Publisher
}

// Publish implements Publisher.
func (f ForRouter) Publish(ctx context.Context, ro *v1alpha1.Rollout, p plan.Plan) error {
	if !f.Uses(ro) {
		return nil
	}
	return f.Publisher.Publish(ctx, ro, p)
}

// Acknowledgers answer together for several data planes (the xDS plane
// with its fallback, the Gateway API routes' gateways), each of which
// acknowledges what is none of its business: a version is rejected when
// one rejects it (with every rejection's reason), pending while one has
// not answered, and acknowledged when all have.
//
// The xDS counts and silent nodes of the answers are kept, for the
// engine's judgement of silent proxies (spec.dataPlane.silentProxies),
// except while an answer without nodes is pending: a router's gateway
// holds the step whatever the proxies do, and silent proxies must not
// make the step count without it.
type Acknowledgers []Acknowledger

// Acknowledgement implements Acknowledger.
func (as Acknowledgers) Acknowledgement(ctx context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	out := engine.DataPlane{Version: version, State: engine.AckAcknowledged}
	var nacks []string
	var errs []error
	holds := false
	for _, a := range as {
		dp, err := a.Acknowledgement(ctx, ro, version)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Subscribed += dp.Subscribed
		out.Acked += dp.Acked
		out.Silent = append(out.Silent, dp.Silent...)
		switch dp.State {
		case engine.AckRejected:
			nacks = append(nacks, dp.Message)
		case engine.AckAcknowledged:
		default:
			out.State = engine.AckPending
			holds = holds || dp.Subscribed == 0
		}
	}
	switch {
	case len(nacks) > 0:
		// A rejection stands whatever the others say, an error included.
		out.State, out.Message = engine.AckRejected, strings.Join(nacks, "; ")
		return out, nil
	case len(errs) > 0:
		return engine.DataPlane{Version: version, State: engine.AckPending}, errors.Join(errs...)
	case holds:
		out.Subscribed, out.Acked, out.Silent = 0, 0, nil
	}
	return out, nil
}

// AcknowledgesOnWrite implements WriteAcknowledger: true when every one
// of them answers at once.
func (as Acknowledgers) AcknowledgesOnWrite(ro *v1alpha1.Rollout) bool {
	for _, a := range as {
		if wa, ok := a.(WriteAcknowledger); !ok || !wa.AcknowledgesOnWrite(ro) {
			return false
		}
	}
	return true
}

// Forget passes a deleted Rollout on to each that remembers Rollouts.
func (as Acknowledgers) Forget(key types.NamespacedName) {
	for _, a := range as {
		if f, ok := a.(interface{ Forget(types.NamespacedName) }); ok {
			f.Forget(key)
		}
	}
}
