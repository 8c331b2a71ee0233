package xdsplane

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// Options configure a Plane.
type Options struct {
	// Fallback acknowledges a plan version when no xDS client subscribes
	// to its service: typically the controller.AcceptedOnWrite wrapping
	// the Istio writer, so the accepted VirtualService write is the
	// acknowledgement of a mesh without xDS clients.
	Fallback controller.Acknowledger
	// AckWithoutClients, when there is no Fallback, counts a published
	// version as acknowledged while no xDS client subscribes. Off by
	// default, so that a step never completes unseen.
	AckWithoutClients bool
	// NoClientsRetry is how often a background wait looks again while no
	// client of this replica has an answer to give; default 250ms.
	NoClientsRetry time.Duration
	// Replicas, when set, are the other replicas' reports: the leader's
	// acknowledgement then counts the xDS clients connected to any
	// replica, not only to this one.
	Replicas *Reports
	// Metrics count the answers; nil counts nowhere.
	Metrics *Metrics
	// Logger reports publishes that fail outside a reconcile (Forget).
	Logger logr.Logger
}

// Plane is the data plane of controller mode on the xDS side. It keeps the
// current plan of every Rollout and publishes the complete set to the xDS
// server, which serves them all. Two writers feed it: the leader's
// reconciler (controller.Publisher, controller.Acknowledger) and, on every
// replica, the Feeder, which rebuilds each Rollout's plan from its status.
// The plan of a Rollout is replaced only by one from the same or a newer
// resourceVersion, so whichever writer is late never turns the traffic
// back.
//
// For the leader it also waits in the background for the proxies'
// answer to each published version and sends the Rollout on Wake, so
// acknowledgement reaches the engine in milliseconds, not at the next poll;
// while the answer is pending, it sends the Rollout too when who has
// answered changes, so the engine sees a silent proxy (and its deadline)
// as soon as it is silent.
// With Options.Replicas those proxies are every replica's: its own
// tracker's and those the other replicas report.
type Plane struct {
	srv  *xds.Server
	opts Options
	base context.Context
	wake chan event.GenericEvent

	// queued are the updates waiting for the next publish (qmu): those
	// that arrive while one publish runs go out together in the next,
	// so a wave of N Rollouts costs far fewer than N publishes of every
	// plan, and a lone update still goes out at once.
	qmu    sync.Mutex
	queued []*queuedUpdate
	// publishing is the slot of the one caller publishing the queue.
	publishing chan struct{}

	mu    sync.Mutex
	plans map[types.NamespacedName]held
	waits map[types.NamespacedName]*waitEntry
	// answered is the version and answer last counted per Rollout, so
	// the metric counts each answer once, not once per reconcile.
	answered map[types.NamespacedName]engine.DataPlane
}

// held is a Rollout's plan and the resourceVersion it was read from.
type held struct {
	plan plan.Plan
	rv   string
}

// change is one update of the Plane: a Rollout's plan at a
// resourceVersion, or (forget) its removal.
type change struct {
	key    types.NamespacedName
	plan   plan.Plan
	rv     string
	forget bool
}

var (
	_ controller.Publisher         = (*Plane)(nil)
	_ controller.Acknowledger      = (*Plane)(nil)
	_ controller.WriteAcknowledger = (*Plane)(nil)
)

// NewPlane publishes through srv. Background waits end when ctx does.
func NewPlane(ctx context.Context, srv *xds.Server, opts Options) *Plane {
	if opts.NoClientsRetry <= 0 {
		opts.NoClientsRetry = 250 * time.Millisecond
	}
	if opts.Metrics == nil {
		opts.Metrics = unregisteredMetrics()
	}
	return &Plane{
		srv:   srv,
		opts:  opts,
		base:  ctx,
		wake:  make(chan event.GenericEvent, 64),
		plans: map[types.NamespacedName]held{},

		publishing: make(chan struct{}, 1),
		waits:      map[types.NamespacedName]*waitEntry{},
		answered:   map[types.NamespacedName]engine.DataPlane{},
	}
}

// Wake sends a Rollout when the data plane answered its published plan,
// and while the answer is pending, when who has answered it changes (at
// most every ackwatch.MinInterval); give it to controller.Reconciler.Wake.
func (p *Plane) Wake() <-chan event.GenericEvent { return p.wake }

// Publish implements controller.Publisher: the Rollout's plan, as of its
// resourceVersion, joins the published set, and the answer to it is
// awaited in the background. A plan older than the one held is ignored:
// a newer status has already been served.
func (p *Plane) Publish(ctx context.Context, ro *v1alpha1.Rollout, pl plan.Plan) error {
	key := keyOf(ro)
	if err := p.update(ctx, change{key: key, plan: pl, rv: ro.ResourceVersion}); err != nil {
		return fmt.Errorf("xDS: publish plan %s of rollout %s: %w", pl.Version, key, err)
	}
	// A version the reconciler was already given an answer for needs no
	// wait: it would only send the Rollout again at once, and the next
	// reconcile would publish again, in a loop.
	if _, ok := p.current(key, pl.Version); ok && !p.told(key, pl.Version) {
		p.ensureWait(ro, pl.Version)
	}
	return nil
}

// told reports whether Acknowledgement has answered version with more
// than pending.
func (p *Plane) told(key types.NamespacedName, version string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.answered[key]
	return ok && a.Version == version && a.State != engine.AckPending
}

// Acknowledgement implements controller.Acknowledger. With xDS clients
// of the service on any replica it is their answer (this replica's
// tracker, the others' reports; see aggregate). With none anywhere it is
// the Fallback's answer, or with AckWithoutClients an acknowledgement,
// but only for the version this Plane has published: nothing stands in
// for a plan that is not out. A Fallback that rejected the version (Istio
// refused it) rejects it whatever the clients say. A pending answer makes
// sure a background wait is on it, which sends the Rollout on Wake when
// it changes.
func (p *Plane) Acknowledgement(ctx context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	key := keyOf(ro)
	svc, current := p.current(key, version)
	if svc == "" {
		svc = xds.ServiceKey(ro.Namespace, ro.Spec.Service.Name)
	}
	dp, via, err := p.answer(ctx, ro, p.srv.Status(svc, version), current)
	if err != nil {
		return dp, err
	}
	if dp.State == engine.AckPending {
		if current {
			p.ensureWait(ro, version)
		}
		return dp, nil
	}
	p.count(key, dp, via)
	return dp, nil
}

// AcknowledgesOnWrite implements controller.WriteAcknowledger: with no
// xDS client of the Rollout's service on any replica, the answer is the
// Fallback's (if it answers on the write) or, with AckWithoutClients,
// given at once; with clients, they answer later.
func (p *Plane) AcknowledgesOnWrite(ro *v1alpha1.Rollout) bool {
	key := keyOf(ro)
	svc, _ := p.current(key, "")
	if svc == "" {
		svc = xds.ServiceKey(ro.Namespace, ro.Spec.Service.Name)
	}
	if _, clients := aggregate(ro.Status.Traffic.PlanVersion, p.answers(key, p.srv.Status(svc, ro.Status.Traffic.PlanVersion))); clients > 0 {
		return false
	}
	if p.opts.Fallback == nil {
		return p.opts.AckWithoutClients
	}
	wa, ok := p.opts.Fallback.(controller.WriteAcknowledger)
	return ok && wa.AcknowledgesOnWrite(ro)
}

// answer turns what the data plane says about a version into the
// engine's observation, standing in for absent clients as Options say,
// and names what answered (the via label of the answers metric).
func (p *Plane) answer(ctx context.Context, ro *v1alpha1.Rollout, st xds.Status, current bool) (engine.DataPlane, string, error) {
	answers := p.answers(keyOf(ro), st)
	dp, clients := aggregate(st.PlanVersion, answers)
	via := viaLocal
	if remote(answers) {
		via = viaReplicas
	}
	// The Fallback is asked even with clients: its rejection means the
	// mesh's sidecars will never get this plan.
	if current && p.opts.Fallback != nil && dp.State != engine.AckRejected {
		fb, err := p.opts.Fallback.Acknowledgement(ctx, ro, st.PlanVersion)
		if err != nil {
			return fb, "", fmt.Errorf("acknowledgement of the fallback data plane: %w", err)
		}
		if fb.State == engine.AckRejected || clients == 0 {
			return fb, viaFallback, nil
		}
	}
	switch {
	case clients > 0:
		return dp, via, nil
	case current && p.opts.Fallback == nil && p.opts.AckWithoutClients:
		return engine.DataPlane{Version: st.PlanVersion, State: engine.AckAcknowledged}, viaWithoutClients, nil
	}
	return engine.DataPlane{Version: st.PlanVersion, State: engine.AckPending}, "", nil
}

// answers are the replicas' answers about the Rollout's version: this
// replica's tracker's (st), then the other replicas' reports.
func (p *Plane) answers(key types.NamespacedName, st xds.Status) []replicaAnswer {
	answers := []replicaAnswer{localAnswer(p.replica(), st)}
	if p.opts.Replicas != nil {
		answers = append(answers, p.opts.Replicas.answers(key)...)
	}
	return answers
}

// replica is this replica's name in rejection messages; none without
// reports.
func (p *Plane) replica() string {
	if p.opts.Replicas == nil {
		return ""
	}
	return p.opts.Replicas.Replica()
}

// count counts an answer the first time it is given for a version.
func (p *Plane) count(key types.NamespacedName, dp engine.DataPlane, via string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.answered[key]; ok && last.Version == dp.Version && last.State == dp.State {
		return
	}
	p.answered[key] = engine.DataPlane{Version: dp.Version, State: dp.State}
	p.opts.Metrics.answered(dp.State, via)
}

// Forget implements the reconciler's optional Forget: a deleted Rollout's
// plan leaves the published set, its wait ends, and the Fallback forgets
// it too.
func (p *Plane) Forget(key types.NamespacedName) {
	p.mu.Lock()
	if w := p.waits[key]; w != nil {
		w.cancel()
		delete(p.waits, key)
	}
	delete(p.answered, key)
	p.mu.Unlock()
	if f, ok := p.opts.Fallback.(interface{ Forget(types.NamespacedName) }); ok {
		f.Forget(key)
	}
	// Not a reconcile's context: the removal must go out even if the
	// caller is done, and nobody else would retry it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.base), time.Minute)
	defer cancel()
	if err := p.update(ctx, change{key: key, forget: true}); err != nil {
		p.opts.Logger.Error(err, "xDS: removing a deleted rollout's plan failed; it goes with the next publish", "rollout", key.String())
	}
}

// current returns the service key of the Rollout's held plan and whether
// that plan has version.
func (p *Plane) current(key types.NamespacedName, version string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.plans[key]
	if !ok {
		return "", false
	}
	return xds.PlanKey(&h.plan), h.plan.Version == version
}

// servedPlan is the service key and version of a Rollout's held plan.
type servedPlan struct {
	service, version string
}

// served lists the plan of every Rollout held.
func (p *Plane) served() map[types.NamespacedName]servedPlan {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[types.NamespacedName]servedPlan, len(p.plans))
	for k, h := range p.plans {
		out[k] = servedPlan{service: xds.PlanKey(&h.plan), version: h.plan.Version}
	}
	return out
}

// queuedUpdate is one caller's changes and, once published, its result.
type queuedUpdate struct {
	changes []change
	done    chan error
}

// update publishes changes, together with every update queued while the
// publish before ran (a group commit). Whoever takes the publishing slot
// publishes the whole queue and hands each caller its result; a caller
// whose update went out in another's publish returns as soon as it is
// answered, without waiting for any lock. One Rollout's bad plan still
// fails only its own update: a group that fails is published again one
// update at a time.
func (p *Plane) update(ctx context.Context, changes ...change) error {
	u := &queuedUpdate{changes: changes, done: make(chan error, 1)}
	p.qmu.Lock()
	p.queued = append(p.queued, u)
	p.qmu.Unlock()
	for {
		select {
		case err := <-u.done:
			return err
		case p.publishing <- struct{}{}:
			p.publishQueued(ctx)
			<-p.publishing
		}
	}
}

// publishQueued publishes every queued update as one group and answers
// each; the caller holds the publishing slot.
func (p *Plane) publishQueued(ctx context.Context) {
	p.qmu.Lock()
	group := p.queued
	p.queued = nil
	p.qmu.Unlock()
	if len(group) == 0 {
		return
	}
	var all []change
	for _, g := range group {
		all = append(all, g.changes...)
	}
	err := p.apply(ctx, all...)
	if err == nil || len(group) == 1 {
		for _, g := range group {
			g.done <- err
		}
		return
	}
	for _, g := range group {
		g.done <- p.apply(ctx, g.changes...)
	}
}

// apply applies changes and publishes the resulting set once; the caller
// holds the publishing slot, so no other apply changes the plans while
// the server publishes, and p.mu is held only to change and read them (a
// reader may see a plan a few milliseconds before it is served). A change whose resourceVersion is older than the held one is
// dropped. If the publish fails, the plans it would have changed are
// restored, so one Rollout's bad plan (say, a host another Rollout
// already routes) never holds back the others'. Removals stay removed:
// the next publish takes them out.
func (p *Plane) apply(ctx context.Context, changes ...change) error {
	p.mu.Lock()
	undo := map[types.NamespacedName]*held{}
	dirty := false
	for _, c := range changes {
		old, ok := p.plans[c.key]
		switch {
		case c.forget:
			dirty = dirty || ok
			delete(p.plans, c.key)
		case ok && !newerRV(old.rv, c.rv):
		case ok && old.plan.Version == c.plan.Version:
			p.plans[c.key] = held{plan: old.plan, rv: c.rv}
		default:
			if _, seen := undo[c.key]; !seen {
				undo[c.key] = nil
				if ok {
					undo[c.key] = &old
				}
			}
			p.plans[c.key] = held{plan: c.plan, rv: c.rv}
			dirty = true
		}
	}
	if !dirty {
		p.mu.Unlock()
		return nil
	}
	all := p.all()
	p.mu.Unlock()
	err := p.srv.Publish(ctx, all)
	if err != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		for key, h := range undo {
			if h == nil {
				delete(p.plans, key)
			} else {
				p.plans[key] = *h
			}
		}
	}
	return err
}

// all is the published set, in a stable order.
func (p *Plane) all() []plan.Plan {
	// By fields, not by String(): that built two strings per comparison,
	// tens of thousands per publish at 1,000 Rollouts.
	keys := slices.SortedFunc(maps.Keys(p.plans), func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	out := make([]plan.Plan, 0, len(keys))
	for _, k := range keys {
		out = append(out, p.plans[k].plan)
	}
	return out
}

// newerRV reports whether a plan read at resourceVersion next may replace
// one read at prev. The API server's resourceVersions are opaque by
// contract but etcd revisions in practice; compared as numbers they order
// the states of an object, so an informer delivering an older status late
// cannot undo a newer one. Anything unparsable falls back to "the latest
// arrival wins".
func newerRV(prev, next string) bool {
	a, errA := strconv.ParseUint(prev, 10, 64)
	b, errB := strconv.ParseUint(next, 10, 64)
	if errA != nil || errB != nil {
		return true
	}
	return b >= a
}

func keyOf(ro *v1alpha1.Rollout) types.NamespacedName {
	return types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
}
