// Package workload is the replica arithmetic of controller mode, kept free
// of I/O and of controller-runtime: which ReplicaSet runs each revision of a
// Rollout, what it looks like, how ready it is, and what has to change for
// the engine's Output.Scale to hold. The reconciler (kube/controller) lists
// the ReplicaSets, asks Plan what to do, and does it.
package workload

import (
	"maps"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// LabelRevision carries the revision (engine.DesiredRevision: a hash of the
// pod template) on a ReplicaSet, in its selector and on its pods. Istio
// DestinationRule subsets and the EndpointSlice source select on it.
const LabelRevision = "sluice.dev/revision"

// DefaultRevisionHistory is how many ReplicaSets of past revisions, scaled
// to zero, are kept beside the live ones. A few are enough to see what ran
// recently (`kubectl get rs`); Git, not old ReplicaSets, is the history a
// rollback comes from, and a reverted template hashes to the same revision,
// so its ReplicaSet is recreated under the same name if it was deleted.
const DefaultRevisionHistory = 3

// Name is the ReplicaSet name of a revision: <rollout>-<revision>.
func Name(rollout, revision string) string { return rollout + "-" + revision }

// RolloutKind is the group, version and kind owner references point at.
var RolloutKind = v1alpha1.GroupVersion.WithKind("Rollout")

// ReplicaSet builds the ReplicaSet of the Rollout's current template, which
// must hash to revision. Its selector is the template's labels plus the
// revision label, so two revisions never select each other's pods; the
// owner reference makes deleting the Rollout delete it and its pods.
func ReplicaSet(ro *v1alpha1.Rollout, revision string, replicas int32) *appsv1.ReplicaSet {
	tmpl := ro.Spec.Template.DeepCopy()
	labels := maps.Clone(tmpl.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelRevision] = revision
	tmpl.Labels = labels
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            Name(ro.Name, revision),
			Namespace:       ro.Namespace,
			Labels:          maps.Clone(labels),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, RolloutKind)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: maps.Clone(labels)},
			Template: *tmpl,
		},
	}
}

// Owned keeps the ReplicaSets whose controller is the Rollout and which
// carry a revision label, by revision.
func Owned(ro *v1alpha1.Rollout, rss []appsv1.ReplicaSet) map[string]*appsv1.ReplicaSet {
	out := map[string]*appsv1.ReplicaSet{}
	for i := range rss {
		rs := &rss[i]
		ref := metav1.GetControllerOf(rs)
		rev := rs.Labels[LabelRevision]
		if ref == nil || ref.UID != ro.UID || rev == "" {
			continue
		}
		out[rev] = rs
	}
	return out
}

// Readiness is what the engine needs to know of the replicas: how many of
// the stable and canary revisions' pods are available. Missing ReplicaSets
// count zero.
func Readiness(owned map[string]*appsv1.ReplicaSet, stable, canary string) *engine.Workload {
	avail := func(rev string) int32 {
		if rs := owned[rev]; rev != "" && rs != nil {
			return rs.Status.AvailableReplicas
		}
		return 0
	}
	return &engine.Workload{StableAvailable: avail(stable), CanaryAvailable: avail(canary)}
}

// Changes are what makes the ReplicaSets match the engine's scale.
type Changes struct {
	// Create is the ReplicaSet of the spec's revision when it is wanted and
	// does not exist.
	Create *appsv1.ReplicaSet
	// Scale are existing ReplicaSets whose replicas must change.
	Scale []Resize
	// Delete are ReplicaSets at zero beyond the history bound.
	Delete []*appsv1.ReplicaSet
	// Missing are wanted revisions that have no ReplicaSet and cannot get
	// one: their template is no longer in the spec (someone deleted it).
	Missing []string
}

// Resize sets one ReplicaSet's replicas.
type Resize struct {
	ReplicaSet *appsv1.ReplicaSet
	Replicas   int32
}

// Plan compares the owned ReplicaSets with the engine's scale. Revisions the
// scale does not list run no replicas; of those, the history newest are kept
// and older ones deleted, but never the spec's own revision, whose
// ReplicaSet an aborted rollout's retry reuses.
func Plan(ro *v1alpha1.Rollout, owned map[string]*appsv1.ReplicaSet, scale []engine.Scale, specRevision string, history int) Changes {
	var ch Changes
	want := map[string]bool{}
	for _, s := range scale {
		want[s.Revision] = true
		rs := owned[s.Revision]
		switch {
		case rs == nil && s.Revision == specRevision && ro.Spec.Template != nil:
			ch.Create = ReplicaSet(ro, s.Revision, s.Replicas)
		case rs == nil:
			ch.Missing = append(ch.Missing, s.Revision)
		case replicas(rs) != s.Replicas:
			ch.Scale = append(ch.Scale, Resize{ReplicaSet: rs, Replicas: s.Replicas})
		}
	}
	var idle []*appsv1.ReplicaSet
	for rev, rs := range owned {
		if want[rev] {
			continue
		}
		if replicas(rs) != 0 {
			ch.Scale = append(ch.Scale, Resize{ReplicaSet: rs, Replicas: 0})
		}
		if rev != specRevision {
			idle = append(idle, rs)
		}
	}
	sort.Slice(ch.Scale, func(i, j int) bool { return ch.Scale[i].ReplicaSet.Name < ch.Scale[j].ReplicaSet.Name })
	ch.Delete = beyondHistory(idle, history)
	return ch
}

// beyondHistory returns the idle ReplicaSets beyond the newest history
// ones, ordered by creation time and then name so the choice is stable.
func beyondHistory(idle []*appsv1.ReplicaSet, history int) []*appsv1.ReplicaSet {
	sort.Slice(idle, func(i, j int) bool {
		a, b := idle[i].CreationTimestamp, idle[j].CreationTimestamp
		if !a.Equal(&b) {
			return b.Before(&a)
		}
		return idle[i].Name < idle[j].Name
	})
	if len(idle) <= max(history, 0) {
		return nil
	}
	return idle[max(history, 0):]
}

func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1 // the API server's default
	}
	return *rs.Spec.Replicas
}
