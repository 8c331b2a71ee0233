package gitapply

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// SyncStatus is the source's state for the Rollouts it applies
// (v1alpha1.GitSyncStatus): the head, the commit in force in the cluster,
// the commit rejected since. A commit the Syncer accepted is not in force
// until it is applied, so AppliedCommit is the Applier's, and an apply the
// API server refused in part is the Message when Git itself is fine.
func (st State) SyncStatus(sourceID string) *v1alpha1.GitSyncStatus {
	out := st.Git.SyncStatus()
	out.AppliedCommit = st.Commit
	if sourceID != ConfigSourceID {
		out.Source = sourceID
	}
	if st.Err != nil && out.Message == "" {
		out.Message = untrusted.Text(fmt.Sprintf("applied in part, retrying: %v", st.Err), v1alpha1.MaxGitSyncText)
	}
	return out
}

// GitSync is the Git state of the source ro was applied from, for its
// status.gitSync; nil for a Rollout no source applied (kubectl, Argo CD)
// or whose source is gone or not running on this replica; ro's own until
// the source has synced once.
func (s *Sources) GitSync(_ context.Context, ro *v1alpha1.Rollout) *v1alpha1.GitSyncStatus {
	id := SourceOf(ro)
	if id == "" {
		return nil
	}
	a := s.Get(id)
	if a == nil {
		return nil
	}
	st := a.State()
	if st.Git.LastAttempt.IsZero() {
		// Not synced since this process started: what the Rollout says
		// is what the previous leader knew, truer than "nothing yet".
		return ro.Status.GitSync
	}
	return st.SyncStatus(id)
}

// wakeOnGitChange wakes every Rollout of the source when its Git state as
// the Rollouts show it changed (a push rejected, a new head, a commit
// applied), so each writes status.gitSync at once; a push that changes a
// Rollout's spec wakes it anyway, but a rejected push changes no spec.
// last is the state woken for before; the new one is returned.
func (a *Applier) wakeOnGitChange(ctx context.Context, last *v1alpha1.GitSyncStatus) *v1alpha1.GitSyncStatus {
	cur := a.State().SyncStatus(a.opts.SourceID)
	if !a.stateWakeWanted.Load() || equality.Semantic.DeepEqual(cur, last) {
		return cur
	}
	var live v1alpha1.RolloutList
	if err := a.c.List(ctx, &live); err != nil {
		// The next change tries again; the Rollouts' own reconciles
		// write the state meanwhile.
		a.log.Error(err, "cannot list Rollouts to show them the Git state")
		return last
	}
	for i := range live.Items {
		ro := &live.Items[i]
		if SourceOf(ro) != a.opts.SourceID {
			continue
		}
		select {
		case a.stateWake <- event.GenericEvent{Object: &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}}:
		case <-ctx.Done():
			return last
		}
	}
	return cur
}
