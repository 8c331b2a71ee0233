package clusterapi

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

var (
	_ rolloutapi.Follower    = (*Backend)(nil)
	_ rolloutapi.GitReporter = (*Backend)(nil)
)

// Follow implements rolloutapi.Follower with Kubernetes watches: on the
// Rollouts (the one named, or those List shows), and on Sluice's
// ReplicaSets of the namespace, whose pods becoming ready is news before
// the controller writes it into status. A user who may not watch
// ReplicaSets still follows the Rollouts. The channel closes when a
// watch ends (the API server ends them after a while); the caller reads
// again and follows anew.
func (b *Backend) Follow(ctx context.Context, namespace, name string) (<-chan struct{}, error) {
	ns := namespace
	if name == "" {
		ns = b.o.ListNamespace
	}
	opts := &client.ListOptions{Namespace: ns}
	if name != "" {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", name)
	}
	ctx, cancel := context.WithCancel(ctx)
	rw, err := b.c.Watch(ctx, &v1alpha1.RolloutList{}, opts)
	if err != nil {
		cancel()
		return nil, classify(err, "watch rollouts")
	}
	watches := []watch.Interface{rw}
	revision, err := labels.Parse(workload.LabelRevision)
	if err == nil {
		if w, err := b.c.Watch(ctx, &appsv1.ReplicaSetList{}, &client.ListOptions{Namespace: ns, LabelSelector: revision}); err == nil {
			watches = append(watches, w)
		}
	}
	out := make(chan struct{}, 1)
	ended := make(chan struct{}, len(watches))
	for _, w := range watches {
		go func() {
			defer func() { ended <- struct{}{} }()
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					return
				}
				if ev.Type == watch.Bookmark {
					continue
				}
				if name != "" {
					if !b.concerns(ev.Object, name) {
						continue
					}
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}()
	}
	go func() {
		// The first watch to end ends the follow: the caller reads
		// again, so nothing missed in between is lost.
		<-ended
		cancel()
		for _, w := range watches {
			w.Stop()
		}
		// Every reader sends on out: close it once they all are done.
		for range len(watches) - 1 {
			<-ended
		}
		close(out)
	}()
	return out, nil
}

// concerns reports whether a watched object is the Rollout name or one of
// its ReplicaSets.
func (b *Backend) concerns(obj any, name string) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	if _, ok := obj.(*appsv1.ReplicaSet); !ok {
		return m.GetName() == name
	}
	for _, ref := range m.GetOwnerReferences() {
		if ref.Kind == "Rollout" && ref.Name == name {
			return true
		}
	}
	return false
}

// GitSources implements rolloutapi.GitReporter: the GitSources of the
// namespace List shows (every namespace when it lists all), each as its
// status tells. The controller's own source (its configuration's git
// section) has no object; its state is on each Rollout it applied.
func (b *Backend) GitSources(ctx context.Context) ([]rolloutapi.GitSource, error) {
	var list v1alpha1.GitSourceList
	if err := b.r.List(ctx, &list, &client.ListOptions{Namespace: b.o.ListNamespace}); err != nil {
		return nil, classify(err, "list gitsources")
	}
	out := make([]rolloutapi.GitSource, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, GitSourceOf(&list.Items[i]))
	}
	return out, nil
}

// GitSourceOf is a GitSource's status in the API's words: its last
// attempted commit is the head, a CommitRejected Ready condition (or
// listed problems) the rejection, any other trouble the message.
func GitSourceOf(gs *v1alpha1.GitSource) rolloutapi.GitSource {
	st := gs.Status
	out := rolloutapi.GitSource{Repository: gs.Spec.URL}
	out.Source = gs.Namespace + "/" + gs.Name
	out.HeadCommit, out.AppliedCommit = st.LastAttemptedCommit, st.LastAppliedCommit
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.GitSourceReady)
	rejected := c != nil && c.Reason == v1alpha1.GitSourceCommitRejected
	if (rejected || len(st.Problems) > 0) && st.LastAttemptedCommit != "" {
		r := &v1alpha1.GitRejection{Commit: st.LastAttemptedCommit, Problems: st.Problems, ProblemCount: st.ProblemCount}
		if c != nil && rejected {
			at := c.LastTransitionTime
			r.At = &at
		}
		if len(r.Problems) == 0 {
			r.Message = st.LastAttemptMessage
		}
		out.Rejected = r
	}
	switch {
	case gs.Spec.Suspend:
		out.Message = "suspended: nothing is fetched or applied"
	case c != nil && c.Status != "True" && !rejected:
		out.Message = fmt.Sprintf("%s: %s", c.Reason, c.Message)
	}
	return out
}
