package runner

import (
	"context"
	"errors"
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
// xDS server, endpoints come from the Rollouts' backends, and a goroutine
// per published plan waits for the proxies' answer to wake the loop.
type XDSPlane struct {
	srv       *xds.Server
	endpoints *xds.Static
	// AckWithoutClients counts a plan as acknowledged when no xDS client
	// subscribes to its service; off by default, so a step never completes
	// unseen.
	AckWithoutClients bool

	changed chan struct{}
	mu      sync.Mutex
	waits   map[string]waitEntry // by service key: the wait for its current version
	// published are the versions of the plans last published, in order;
	// moved: endpoints changed since.
	published []string
	moved     bool
	base      context.Context

	// answers are Observe's, by plan version, until the server's status
	// may move (until closes): a pass asks about every plan, and most
	// passes follow a change that concerns few of them.
	answersMu sync.Mutex
	answers   map[string]engine.DataPlane
	until     <-chan struct{}
}

// noClientsRetry is how often a wait with no subscribed client looks
// again.
const noClientsRetry = 200 * time.Millisecond

// NewXDSPlane serves plans through srv, whose endpoint source must be eps.
func NewXDSPlane(ctx context.Context, srv *xds.Server, eps *xds.Static) *XDSPlane {
	return &XDSPlane{srv: srv, endpoints: eps, changed: make(chan struct{}, 1), waits: map[string]waitEntry{}, base: ctx}
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

// SetPlans publishes every plan, then waits in the background for each
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
	seen := map[string]bool{}
	for _, p := range plans {
		key := xds.ServiceKey(p.Namespace, p.Service)
		seen[key] = true
		w, ok := x.waits[key]
		if ok && w.version == p.Version {
			continue // republished unchanged: the wait goes on
		}
		if ok {
			w.cancel()
		}
		wctx, cancel := context.WithCancel(x.base)
		x.waits[key] = waitEntry{version: p.Version, cancel: cancel}
		go x.wait(wctx, key, p.Version)
	}
	for key, w := range x.waits {
		if !seen[key] {
			w.cancel()
			delete(x.waits, key)
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

// wait wakes the loop once the version has its final answer: every
// subscribed node applied it, one rejected it, or (AckWithoutClients) no
// client subscribes. Until then watch reports the partial answers.
func (x *XDSPlane) wait(ctx context.Context, key, version string) {
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go x.watch(wctx, key, version)
	for ctx.Err() == nil {
		_, err := x.srv.Wait(ctx, key, version)
		var rejected *xds.RejectedError
		switch {
		case err == nil, errors.As(err, &rejected):
			x.signal()
			return
		case errors.Is(err, xds.ErrNoClients) && x.AckWithoutClients:
			x.signal()
			return
		case errors.Is(err, xds.ErrNoClients):
			// Nobody to answer yet; a client that connects gets the plan
			// and answers, so keep waiting, politely.
			select {
			case <-ctx.Done():
				return
			case <-time.After(noClientsRetry):
			}
		default:
			return // superseded or cancelled: a newer wait took over
		}
	}
}

// watch wakes the loop while the version is pending and who has answered
// it changes (ackwatch). The engine then sees which nodes stay silent, and
// since when, so it can mark them stale at
// spec.dataPlane.ackDeadlineSeconds and, with silentProxies: Exclude,
// count the step once only stale nodes are missing: a silent node never
// lets wait's final answer come.
func (x *XDSPlane) watch(ctx context.Context, key, version string) {
	ackwatch.Watch(ctx, x.srv.StatusChanged, func() engine.DataPlane { return x.srv.Status(key, version).DataPlane() }, x.signal)
}

func (x *XDSPlane) signal() {
	select {
	case x.changed <- struct{}{}:
	default:
	}
}

// waitEntry is the background wait for one service's current version.
type waitEntry struct {
	version string
	cancel  context.CancelFunc
}
