package xdsplane

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/internal/ackwatch"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// waitEntry is the background wait for one Rollout's current version.
type waitEntry struct {
	version string
	cancel  context.CancelFunc
}

// ensureWait makes sure a background wait is on (Rollout, version): it
// starts one unless that very wait is running, and ends the wait for an
// older version. Only the leader's reconciler calls it (Publish,
// Acknowledgement), so followers run no waits and send nothing on Wake.
func (p *Plane) ensureWait(ro *v1alpha1.Rollout, version string) {
	key := keyOf(ro)
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.waits[key]; w != nil {
		if w.version == version {
			return
		}
		w.cancel()
	}
	ctx, cancel := context.WithCancel(p.base)
	w := &waitEntry{version: version, cancel: cancel}
	p.waits[key] = w
	// The wait keeps its own copy: the reconciler goes on with its object.
	ro = ro.DeepCopy()
	go p.watch(ctx, ro, version)
	go func() {
		defer cancel() // ends the watch too
		p.wait(ctx, ro, version)
		p.mu.Lock()
		if p.waits[key] == w {
			delete(p.waits, key)
		}
		p.mu.Unlock()
	}()
}

// wait blocks until the data plane has an answer for version that the
// engine should see, then sends the Rollout on Wake: every subscribed
// proxy on every replica ACKed it, one NACKed it, or, with no client
// anywhere, the stand-in acknowledgement (Fallback, AckWithoutClients)
// says it is done. Between looks it waits for whatever may move the
// answer: this replica's clients answering (the tracker's Wait), another
// replica's report about the Rollout changing, and, while no client here
// has anything left to answer, a look every NoClientsRetry (a client that
// connects here, the Fallback's write). It ends without a word when the
// version is superseded or ctx ends.
func (p *Plane) wait(ctx context.Context, ro *v1alpha1.Rollout, version string) {
	key := keyOf(ro)
	for ctx.Err() == nil {
		svc, current := p.current(key, version)
		if !current {
			return // superseded or forgotten: a newer wait took over
		}
		// Taken before looking, so a change while looking is not lost.
		var reports <-chan struct{}
		if p.opts.Replicas != nil {
			reports = p.opts.Replicas.changed(key)
		}
		st := p.srv.Status(svc, version)
		if dp, _, err := p.answer(ctx, ro, st, true); err == nil && dp.State != engine.AckPending {
			p.signal(ctx, ro)
			return
		}
		if !p.await(ctx, svc, version, st, reports) {
			return
		}
	}
}

// watch sends the Rollout on Wake while version is pending and who has
// answered it changes, on this replica or another (ackwatch): a node that
// subscribes, applies the version, or leaves it unanswered. The engine
// then sees the silent nodes and since when, marks them stale at
// spec.dataPlane.ackDeadlineSeconds and asks to be called again then;
// with silentProxies: Exclude it counts the step once only stale nodes
// are missing. Without it a silent node would hold back wait's final
// answer, and the engine would see nothing until the next poll. It counts
// xDS clients only: with none anywhere there is no partial answer, and
// wait alone asks the Fallback. It ends with the wait.
func (p *Plane) watch(ctx context.Context, ro *v1alpha1.Rollout, version string) {
	key := keyOf(ro)
	changed := func() <-chan struct{} {
		local := p.srv.StatusChanged()
		if p.opts.Replicas == nil {
			return local
		}
		return either(ctx, local, p.opts.Replicas.changed(key))
	}
	look := func() engine.DataPlane {
		svc, current := p.current(key, version)
		if !current {
			// Superseded or forgotten: nothing to report; the wait
			// ends, and this with it.
			return engine.DataPlane{Version: version, State: engine.AckPending}
		}
		dp, _ := aggregate(version, p.answers(key, p.srv.Status(svc, version)))
		return dp
	}
	ackwatch.Watch(ctx, changed, look, func() { p.signal(ctx, ro) })
}

// either returns a channel closed once a or b is, or ctx ends.
func either(ctx context.Context, a, b <-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		defer close(out)
		select {
		case <-a:
		case <-b:
		case <-ctx.Done():
		}
	}()
	return out
}

// await blocks until something may have moved the answer, and reports
// whether to look again (false: the version was superseded, or ctx
// ended).
func (p *Plane) await(ctx context.Context, svc, version string, st xds.Status, reports <-chan struct{}) bool {
	var local chan error
	var retry <-chan time.Time
	if st.Subscribed > st.Acked && len(st.Rejected) == 0 {
		// This replica's clients have yet to answer: the tracker says
		// when they have.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		local = make(chan error, 1)
		go func() {
			_, err := p.srv.Wait(wctx, svc, version)
			local <- err
		}()
	} else {
		t := time.NewTimer(p.opts.NoClientsRetry)
		defer t.Stop()
		retry = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case err := <-local:
		return !errors.Is(err, xds.ErrSuperseded)
	case <-reports:
	case <-retry:
	}
	return true
}

// signal sends the Rollout to the reconciler. It blocks until the
// reconciler's source takes it, or the wait ends: a dropped signal would
// cost the rollout a poll interval.
func (p *Plane) signal(ctx context.Context, ro *v1alpha1.Rollout) {
	// The reconciler enqueues by namespace and name; nothing else is read.
	ev := event.GenericEvent{Object: &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}}
	select {
	case p.wake <- ev:
	case <-ctx.Done():
	}
}
