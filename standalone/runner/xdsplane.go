package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/ackwatch"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/xds"
)

// XDSPlane is the DataPlane of standalone mode: plans go out through the
// xDS server, endpoints come from the Rollouts' backends, and one
// goroutine follows the proxies' answers to every published plan and
// wakes the loop (follow).
type XDSPlane struct {
	srv       *xds.Server
	endpoints *xds.Static
	// AckWithoutClients counts a plan as acknowledged when no xDS client
	// subscribes to its service; off by default, so a step never completes
	// unseen.
	AckWithoutClients bool

	changed chan struct{}
	// added tells follow that SetPlans added versions to follow.
	added chan struct{}
	mu    sync.Mutex
	waits map[string]*waitEntry // by service key: its current version's answer
	// published are the versions of the plans last published, in order;
	// moved: endpoints changed since.
	published []string
	moved     bool

	// answers are Observe's, by plan version, until the server's status
	// may move (until closes): a pass asks about every plan, and most
	// passes follow a change that concerns few of them.
	answersMu sync.Mutex
	answers   map[string]engine.DataPlane
	until     <-chan struct{}
}

// NewXDSPlane serves plans through srv, whose endpoint source must be eps,
// and follows the answers to them until ctx ends.
func NewXDSPlane(ctx context.Context, srv *xds.Server, eps *xds.Static) *XDSPlane {
	x := &XDSPlane{srv: srv, endpoints: eps, changed: make(chan struct{}, 1), added: make(chan struct{}, 1), waits: map[string]*waitEntry{}}
	go x.follow(ctx)
	return x
}

// SetEndpoints says where a revision of a service runs. The server reads
// it at the next SetPlans, which publishes then even plans it published
// before.
func (x *XDSPlane) SetEndpoints(namespace, service, revision string, addrs []string) error {
	moved, err := x.endpoints.Put(namespace, service, revision, addrs...)
	if err != nil {
		return fmt.Errorf("endpoints of %s/%s revision %s: %w", namespace, service, revision, err)
	}
	if moved {
		x.mu.Lock()
		x.moved = true
		x.mu.Unlock()
	}
	return nil
}

// SetPlans publishes every plan, then follows in the background each
// service's answer to its new version. The same plans as last time (a
// plan's version is a hash of all of it) on the same endpoints are not
// published again: the server would translate every plan to find nothing
// changed.
func (x *XDSPlane) SetPlans(ctx context.Context, plans []plan.Plan) error {
	versions := make([]string, len(plans))
	for i := range plans {
		versions[i] = plans[i].Version
	}
	x.mu.Lock()
	same := !x.moved && x.published != nil && slices.Equal(versions, x.published)
	x.moved = false
	x.mu.Unlock()
	if !same {
		if err := x.srv.Publish(ctx, plans); err != nil {
			x.mu.Lock()
			x.moved = true // publish again at the next call, whatever it brings
			x.mu.Unlock()
			return fmt.Errorf("publish to xDS: %w", err)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.published = versions
	seen := make(map[string]bool, len(plans))
	now, added := time.Now(), false
	for _, p := range plans {
		key := xds.ServiceKey(p.Namespace, p.Service)
		seen[key] = true
		if w, ok := x.waits[key]; ok && w.version == p.Version {
			continue // republished unchanged: following it goes on
		}
		x.waits[key] = &waitEntry{version: p.Version, since: now}
		added = true
	}
	for key := range x.waits {
		if !seen[key] {
			delete(x.waits, key)
		}
	}
	if added {
		select {
		case x.added <- struct{}{}:
		default:
		}
	}
	return nil
}

// Observe is the data plane's answer about the plan's version.
func (x *XDSPlane) Observe(p plan.Plan) engine.DataPlane {
	x.answersMu.Lock()
	defer x.answersMu.Unlock()
	if x.until == nil || closed(x.until) {
		// Taken before the status is read: a change after it closes it.
		x.until = x.srv.StatusChanged()
		x.answers = map[string]engine.DataPlane{}
	}
	if dp, ok := x.answers[p.Version]; ok {
		return dp
	}
	dp := x.observe(p)
	x.answers[p.Version] = dp
	return dp
}

func (x *XDSPlane) observe(p plan.Plan) engine.DataPlane {
	st := x.srv.Status(xds.ServiceKey(p.Namespace, p.Service), p.Version)
	if st.NoClients() && x.AckWithoutClients && st.Published {
		return engine.DataPlane{Version: p.Version, State: engine.AckAcknowledged}
	}
	return st.DataPlane()
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Changed is signalled when a proxy answers a published version.
func (x *XDSPlane) Changed() <-chan struct{} { return x.changed }

// follow wakes the loop when a published version gets its final answer
// (every subscribed node applied it, one rejected it, or, with
// AckWithoutClients, no client subscribes), at once, and while it is
// pending when who has answered it changes, as ackwatch.Watch does for
// one version: the engine then sees which nodes stay silent, and since
// when, so it can mark them stale at spec.dataPlane.ackDeadlineSeconds
// and, with silentProxies: Exclude, count the step once only stale nodes
// are missing (a silent node never lets the final answer come).
//
// One goroutine follows every version, asking the server about all of
// them at once (Statuses) whenever a status may have moved. A wait and a
// watch per published version (two goroutines each) held two goroutines
// per Rollout through a wave: at 1,000 Rollouts about 9 MiB of stacks,
// which also raise the collector's heap goal by as much.
func (x *XDSPlane) follow(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		// Taken before looking: a change while looking is not lost.
		next := x.srv.StatusChanged()
		if again := x.look(time.Now()); again > 0 {
			timer.Reset(again)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-next:
		case <-x.added:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// look asks about every version without its final answer and wakes the
// loop for final answers and for partial ones that changed. A version's
// partial answer is looked at from ackwatch.MinInterval after its
// publish, and at most once per MinInterval after it woke the loop (most
// proxies answer within that time, and then the final answer is the only
// wake). It returns when to look again for a partial answer that was not
// due yet (0: no need).
func (x *XDSPlane) look(now time.Time) time.Duration {
	x.mu.Lock()
	asks := map[string]string{}
	for key, w := range x.waits {
		if !w.done {
			asks[key] = w.version
		}
	}
	x.mu.Unlock()
	if len(asks) == 0 {
		return 0
	}
	sts := x.srv.Statuses(asks)
	x.mu.Lock()
	defer x.mu.Unlock()
	wake := false
	var again time.Duration
	for key, st := range sts {
		w := x.waits[key]
		if w == nil || w.done || w.version != asks[key] {
			continue // superseded while asking
		}
		if len(st.Rejected) > 0 || st.Converged() || (st.NoClients() && x.AckWithoutClients) {
			w.done, wake = true, true
			continue
		}
		due := w.since.Add(ackwatch.MinInterval)
		if !w.woke.IsZero() {
			due = w.woke.Add(ackwatch.MinInterval)
		}
		if now.Before(due) {
			if d := due.Sub(now); again == 0 || d < again {
				again = d
			}
			continue
		}
		// With no node subscribed the progress is the zero one: no wake,
		// as ackwatch.Watch's first look.
		if p := ackwatch.ProgressOf(st.DataPlane()); p != w.last {
			w.last, w.woke, wake = p, now, true
		}
	}
	if wake {
		x.signal()
	}
	return again
}

func (x *XDSPlane) signal() {
	select {
	case x.changed <- struct{}{}:
	default:
	}
}

// waitEntry is what follow knows of the answer to one service's current
// version.
type waitEntry struct {
	version string
	// since is when it was published.
	since time.Time
	// done: it has its final answer, and the loop was woken for it.
	done bool
	// last is the partial answer the loop was last woken for, at woke.
	last ackwatch.Progress
	woke time.Time
}
