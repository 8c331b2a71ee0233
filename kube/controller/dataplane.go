package controller

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Publisher puts a Rollout's traffic plan in force: the Istio writer
// (VirtualService/DestinationRule), the xDS server, or both. It is called on
// every reconcile after the status is persisted, so it must be idempotent;
// the plan's Version is its content hash, which makes "unchanged" cheap to
// tell.
type Publisher interface {
	Publish(ctx context.Context, ro *v1alpha1.Rollout, p plan.Plan) error
}

// Acknowledger reports the data plane's answer to a published plan
// version: every xDS proxy ACKed it, one NACKed it, or (with no proxies)
// the VirtualService write was accepted. It is asked once per reconcile,
// for status.traffic.planVersion, before the engine steps.
type Acknowledger interface {
	Acknowledgement(ctx context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error)
}

// WriteAcknowledger is an Acknowledger that can tell, before a write,
// that its answer to a plan version will be known as soon as Publish has
// returned: the data plane of the Rollout is the write itself (a
// VirtualService the API server accepts, with no xDS client to wait for),
// not proxies that answer later. The reconciler then publishes a new plan
// before it persists the status and steps the engine again with the
// answer (stepOnWrite), so that one status write records both the plan
// and its acknowledgement. An Acknowledger that does not implement it,
// or answers false, is waited for as before.
type WriteAcknowledger interface {
	// AcknowledgesOnWrite reports whether a plan version of ro that
	// Publish wrote without error is then answered (acknowledged or
	// rejected) by Acknowledgement at once. A wrong true costs no
	// safety, only the order: the answer is pending, and the status
	// persisted afterwards names the plan already published.
	AcknowledgesOnWrite(ro *v1alpha1.Rollout) bool
}

// Reverter performs the engine's GitRevert action: a commit that sets the
// Rollout in Git back to its stable revision. It must be idempotent: asked
// again after a crash, a revert that already landed answers "unchanged".
type Reverter interface {
	Revert(ctx context.Context, ro *v1alpha1.Rollout, r engine.GitRevert) (gitsync.RevertResult, error)
}

// GitSyncer knows the Git state of the source a Rollout was applied from
// (kube/gitapply.Sources): the reconciler writes it into status.gitSync,
// so that a rejected push shows on every Rollout the source feeds.
type GitSyncer interface {
	// GitSync returns the state, nil for a Rollout no running source
	// applied.
	GitSync(ctx context.Context, ro *v1alpha1.Rollout) *v1alpha1.GitSyncStatus
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, ro *v1alpha1.Rollout, p plan.Plan) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, ro *v1alpha1.Rollout, p plan.Plan) error {
	return f(ctx, ro, p)
}

// Publishers publishes to each in order and stops at the first error, so a
// later writer never runs ahead of an earlier one that failed.
type Publishers []Publisher

// Publish implements Publisher.
func (ps Publishers) Publish(ctx context.Context, ro *v1alpha1.Rollout, p plan.Plan) error {
	for _, pub := range ps {
		if err := pub.Publish(ctx, ro, p); err != nil {
			return err
		}
	}
	return nil
}

// AcceptedOnWrite is the acknowledgement of a data plane without proxies
// to ask: a plan version counts as acknowledged once Publish succeeded for
// it, for example once the API server accepted the VirtualService write.
// It wraps the Publisher that does the writing and is both the
// reconciler's Publisher and its Acknowledger.
//
// A write refused for its content (istio.RejectedError: the plan does
// not fit the objects Git declares, or the API server or Istio's webhook
// refused it) is the data plane refusing the version, as a proxy's NACK
// is: Publish records it and returns nil, and Acknowledgement answers
// Rejected with the reason, so the engine acts on spec.rollback.onNack
// instead of the reconcile failing, and being retried, with the same
// write forever. Any other error (the API server unreachable, a conflict)
// is returned and leaves the version pending, to be written again.
//
// What it remembers lives in memory. After a restart the first reconcile
// finds nothing acknowledged, republishes (harmless: same content) and
// sees the acknowledgement on the next reconcile, so no step is skipped.
type AcceptedOnWrite struct {
	Publisher Publisher

	mu sync.Mutex
	// written is the data plane's answer to the last version written per
	// Rollout: Acknowledged, or Rejected with the reason.
	written map[types.NamespacedName]engine.DataPlane
}

// NewAcceptedOnWrite acknowledges what p writes successfully.
func NewAcceptedOnWrite(p Publisher) *AcceptedOnWrite {
	return &AcceptedOnWrite{Publisher: p, written: map[types.NamespacedName]engine.DataPlane{}}
}

// Publish writes through the wrapped Publisher and records the answer:
// acknowledged, or rejected for its content. Only other errors are
// returned.
func (a *AcceptedOnWrite) Publish(ctx context.Context, ro *v1alpha1.Rollout, p plan.Plan) error {
	err := a.Publisher.Publish(ctx, ro, p)
	dp := istio.Acknowledgement(p.Version, err)
	if dp.State == engine.AckPending {
		return err // the reconciler says which plan
	}
	a.mu.Lock()
	a.written[types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}] = dp
	a.mu.Unlock()
	return nil
}

// Acknowledgement answers for the last version written: acknowledged, or
// rejected with the reason; any other version is pending.
func (a *AcceptedOnWrite) Acknowledgement(_ context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if dp, ok := a.written[types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}]; ok && dp.Version == version {
		return dp, nil
	}
	return engine.DataPlane{Version: version, State: engine.AckPending}, nil
}

// AcknowledgesOnWrite implements WriteAcknowledger: the accepted write is
// the answer.
func (a *AcceptedOnWrite) AcknowledgesOnWrite(*v1alpha1.Rollout) bool { return true }

// Forget drops what is remembered of a deleted Rollout.
func (a *AcceptedOnWrite) Forget(key types.NamespacedName) {
	a.mu.Lock()
	delete(a.written, key)
	a.mu.Unlock()
}
