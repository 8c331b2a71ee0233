package gatewayapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Route is one Gateway API route a Rollout's routers name.
type Route struct {
	Kind Kind
	Ref  v1alpha1.GatewayRouteRef
}

// Routes lists the HTTPRoute and GRPCRoute routers of ro, in order.
func Routes(ro *v1alpha1.Rollout) []Route {
	var out []Route
	for _, r := range ro.Spec.Service.Routers {
		switch {
		case r.HTTPRoute != nil:
			out = append(out, Route{Kind: HTTPRoute, Ref: *r.HTTPRoute})
		case r.GRPCRoute != nil:
			out = append(out, Route{Kind: GRPCRoute, Ref: *r.GRPCRoute})
		}
	}
	return out
}

// Publisher writes a Rollout's traffic plan into the Gateway API routes
// its routers name, and answers for them. It has the controller's
// Publisher and Acknowledger method sets (kube/controller): the reconciler
// publishes through it and asks it, among its Acknowledgers, whether the
// gateways took the plan. A Rollout without such routers is none of its
// business: Publish does nothing and Acknowledgement acknowledges.
type Publisher struct {
	Writer *Writer
	// Now is the clock silences are measured by; nil: time.Now.
	Now func() time.Time

	mu sync.Mutex
	// last is, per Rollout, what the last Publish of a plan version left.
	last map[types.NamespacedName]publication
	// wrote is, per Rollout, the routes this process wrote for it, or
	// found its record on (adopt), and has not released since.
	wrote map[types.NamespacedName]map[routeRef]bool
	// adopted is, per namespace listed, the routes recording each Rollout
	// not adopted yet (letgo.go).
	adopted map[string]map[types.NamespacedName][]routeRef
	// written is, per route, the generation holding the last plan and
	// when it was first seen.
	written map[routeRef]genSeen
}

// publication is the outcome of publishing one plan version.
type publication struct {
	version string
	// rejected is why the plan could not be written (RejectedError).
	rejected string
	routes   []Written
}

// NewPublisher publishes through w.
func NewPublisher(w *Writer) *Publisher {
	return &Publisher{Writer: w, last: map[types.NamespacedName]publication{}, wrote: map[types.NamespacedName]map[routeRef]bool{},
		adopted: map[string]map[types.NamespacedName][]routeRef{}, written: map[routeRef]genSeen{}}
}

// Publish writes p into every route of ro's routers, in order. A plan the
// routes cannot take (RejectedError) is recorded and answered as a
// rejection, like a proxy's NACK, and Publish returns nil: writing it
// again would not help, and the engine acts on spec.rollback.onNack. Any
// other error (the route or the CRDs missing, the API server unreachable)
// is returned, and the version stays pending until a write succeeds.
//
// It writes on every call, not only for a new plan version, so a route
// someone else changed gets the plan again; a cached Writer makes an
// unchanged route cost no request.
func (p *Publisher) Publish(ctx context.Context, ro *v1alpha1.Rollout, pl plan.Plan) error {
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	routes := Routes(ro)
	if err := p.adopt(ctx, key); err != nil {
		if len(routes) > 0 {
			return err
		}
		// A Rollout without routes is not held up by the look for
		// records of an earlier one; the next Publish looks again.
		p.Writer.log.Error(err, "looking for routes a Rollout may have left", "rollout", key)
	}
	if err := p.release(ctx, key, routes); err != nil {
		return err
	}
	if len(routes) == 0 {
		p.forget(key)
		return nil
	}
	pub := publication{version: pl.Version}
	for _, rt := range routes {
		w, err := p.Writer.Write(ctx, Input{
			Plan:       pl,
			Kind:       rt.Kind,
			Route:      rt.Ref,
			Rollout:    ro.Name,
			Owner:      metav1.NewControllerRef(ro, workload.RolloutKind),
			Provenance: provenance(ro),
		})
		var rej *RejectedError
		switch {
		case errors.As(err, &rej):
			pub.rejected = rej.Err.Error()
			p.set(key, pub)
			return nil
		case err != nil:
			return err
		}
		pub.routes = append(pub.routes, w)
		ref := routeRef{kind: w.Kind, namespace: w.Namespace, name: w.Name}
		p.remember(key, ref)
		p.writtenAt(ref, w.Generation)
	}
	p.set(key, pub)
	return nil
}

// Acknowledgement answers for the version last published: rejected when
// it could not be written; else each route's answer (judge), read from
// the route's status: acknowledged when every route's gateways accepted
// it, rejected when one refused it, pending otherwise. A route whose
// spec changed since Sluice last wrote or checked it is pending until
// the next Publish has checked it again. Any other version is pending.
//
// Each parent's controller counts as a node of the data plane, as xDS
// proxies do: the answer says how many there are, how many took the
// version, and which are silent since the generation holding it was
// written, so that the engine judges a silent gateway as it judges a
// silent proxy (spec.dataPlane.ackDeadlineSeconds, silentProxies).
func (p *Publisher) Acknowledgement(ctx context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	dp := engine.DataPlane{Version: version, State: engine.AckPending}
	if len(Routes(ro)) == 0 {
		dp.State = engine.AckAcknowledged
		return dp, nil
	}
	p.mu.Lock()
	pub, ok := p.last[types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}]
	p.mu.Unlock()
	switch {
	case !ok || pub.version != version:
		return dp, nil
	case pub.rejected != "":
		dp.State, dp.Message = engine.AckRejected, pub.rejected
		return dp, nil
	}
	state := engine.AckAcknowledged
	var nacks []string
	var silent []engine.SilentNode
	changed := false
	for _, w := range pub.routes {
		u, err := p.Writer.Route(ctx, w.Kind, w.Namespace, w.Name)
		if err != nil {
			return dp, err
		}
		if u == nil || u.GetGeneration() != w.Generation {
			state, changed = engine.AckPending, true
			continue
		}
		v, err := judgeRoute(w.Kind, u, w.Generation)
		if err != nil {
			return dp, err
		}
		dp.Subscribed += v.answerers
		dp.Acked += v.acked
		since := p.writtenAt(routeRef{kind: w.Kind, namespace: w.Namespace, name: w.Name}, w.Generation)
		for _, n := range v.pending {
			silent = append(silent, engine.SilentNode{Name: n, Since: since})
		}
		switch v.state {
		case engine.AckRejected:
			nacks = append(nacks, v.message)
		case engine.AckPending:
			state = engine.AckPending
		}
	}
	if len(nacks) > 0 {
		dp.State, dp.Message = engine.AckRejected, strings.Join(nacks, "; ")
		return dp, nil
	}
	dp.State = state
	if changed {
		// A route not checked at its generation yet has no count: the
		// step waits for the next Publish whatever the others say.
		dp.Subscribed, dp.Acked = 0, 0
		return dp, nil
	}
	slices.SortStableFunc(silent, func(a, b engine.SilentNode) int { return a.Since.Compare(b.Since) })
	dp.Silent = silent
	return dp, nil
}

// writtenAt is when this process first saw ref hold generation gen (its
// write, or the check that found the plan there): the time a gateway's
// silence counts from.
func (p *Publisher) writtenAt(ref routeRef, gen int64) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.written[ref]
	if !ok || w.generation != gen {
		w = genSeen{generation: gen, at: p.now()}
		p.written[ref] = w
	}
	return w.at
}

// genSeen is a route generation and when it was first seen.
type genSeen struct {
	generation int64
	at         time.Time
}

func (p *Publisher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// AcknowledgesOnWrite implements controller.WriteAcknowledger: only for
// a Rollout that names no route, which it acknowledges at once; a
// route's gateways answer in its status, later.
func (p *Publisher) AcknowledgesOnWrite(ro *v1alpha1.Rollout) bool { return len(Routes(ro)) == 0 }

// Forget drops what is remembered of a deleted Rollout, and releases the
// routes this process wrote for it in the background: the Rollout's
// per-revision Services go with it, and the managed rules get the
// backends they were declared with back.
//
// The routes are those this process wrote for it and those that still
// hold its record, whoever wrote them (a leader before this one).
func (p *Publisher) Forget(key types.NamespacedName) {
	p.mu.Lock()
	refs := p.wrote[key]
	delete(p.wrote, key)
	if found := p.adopted[key.Namespace]; found != nil {
		delete(found, key)
	}
	p.mu.Unlock()
	p.forget(key)
	p.Writer.Forget(key)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if refs == nil {
			refs = map[routeRef]bool{}
		}
		found, err := p.Writer.recorded(ctx, key.Namespace)
		if err != nil {
			p.Writer.log.Error(err, "looking for the deleted Rollout's routes", "rollout", key)
		}
		for _, ref := range found[key] {
			refs[ref] = true
		}
		for ref := range refs {
			if err := p.Writer.Release(ctx, ref.kind, ref.namespace, ref.name, key.Name); err != nil {
				p.Writer.log.Error(err, "the route keeps the deleted Rollout's rules")
			}
		}
	}()
}

// release releases the routes written for key that routes no longer
// names.
func (p *Publisher) release(ctx context.Context, key types.NamespacedName, routes []Route) error {
	p.mu.Lock()
	var gone []routeRef
	for ref := range p.wrote[key] {
		if !slices.ContainsFunc(routes, func(r Route) bool { return r.Kind == ref.kind && r.Ref.Name == ref.name }) {
			gone = append(gone, ref)
		}
	}
	p.mu.Unlock()
	for _, ref := range gone {
		if err := p.Writer.Release(ctx, ref.kind, ref.namespace, ref.name, key.Name); err != nil {
			return err
		}
		p.mu.Lock()
		delete(p.wrote[key], ref)
		p.mu.Unlock()
	}
	return nil
}

func (p *Publisher) remember(key types.NamespacedName, ref routeRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wrote[key] == nil {
		p.wrote[key] = map[routeRef]bool{}
	}
	p.wrote[key][ref] = true
}

func (p *Publisher) set(key types.NamespacedName, pub publication) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[key] = pub
}

func (p *Publisher) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, key)
}

// provenance is the Rollout's Git provenance, which the Git applier set.
func provenance(ro *v1alpha1.Rollout) map[string]string {
	keys := [...]string{gitsync.AnnotationRepository, gitsync.AnnotationCommit, gitsync.AnnotationPath, gitsync.AnnotationCommitTime}
	var out map[string]string
	for _, k := range keys {
		v, ok := ro.Annotations[k]
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// String names a route as status messages do.
func (r Route) String() string { return fmt.Sprintf("%s %s", r.Kind, r.Ref.Name) }
