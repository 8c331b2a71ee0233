package xdsplane

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

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
	go func() {
		defer cancel()
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
// proxy ACKed it, one NACKed it, or, with no client subscribed, the
// stand-in acknowledgement (Fallback, AckWithoutClients) says it is done.
// While no client subscribes and nothing stands in, it looks again every
// NoClientsRetry: a client that connects gets the plan and answers. It
// ends without a word when the version is superseded or ctx ends.
func (p *Plane) wait(ctx context.Context, ro *v1alpha1.Rollout, version string) {
	for ctx.Err() == nil {
		svc, current := p.current(keyOf(ro), version)
		if !current {
			return // superseded or forgotten: a newer wait took over
		}
		_, err := p.srv.Wait(ctx, svc, version)
		var rejected *xds.RejectedError
		switch {
		case err == nil, errors.As(err, &rejected):
			p.signal(ctx, ro)
			return
		case errors.Is(err, xds.ErrNoClients):
			st := p.srv.Status(svc, version)
			if dp, err := p.answer(ctx, ro, st, true); err == nil && dp.State != engine.AckPending {
				p.signal(ctx, ro)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(p.opts.NoClientsRetry):
			}
		default:
			return // superseded or cancelled
		}
	}
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
