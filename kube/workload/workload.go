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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/gitsync"
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
	return replicaSet(ro, ro.Spec.Template.DeepCopy(), revision, nil, replicas)
}

// replicaSet builds the ReplicaSet of revision from tmpl, which it takes
// over: tmpl's labels plus the revision label and extra are the pods',
// the selector's and the ReplicaSet's own. It carries the Rollout's Git
// provenance: the commit whose spec made the ReplicaSet. It is set when
// the ReplicaSet is created and never rewritten (a later commit that
// keeps the revision did not make it, and rewriting would cost a write
// per ReplicaSet per commit).
func replicaSet(ro *v1alpha1.Rollout, tmpl *corev1.PodTemplateSpec, revision string, extra map[string]string, replicas int32) *appsv1.ReplicaSet {
	labels := maps.Clone(tmpl.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, extra)
	labels[LabelRevision] = revision
	tmpl.Labels = labels
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            Name(ro.Name, revision),
			Namespace:       ro.Namespace,
			Labels:          maps.Clone(labels),
			Annotations:     provenance(ro),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, RolloutKind)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: maps.Clone(labels)},
			Template: *tmpl,
		},
	}
}

// provenance is the Rollout's Git provenance annotations (set by the Git
// applier), nil when it has none.
func provenance(ro *v1alpha1.Rollout) map[string]string {
	var out map[string]string
	for _, k := range []string{gitsync.AnnotationRepository, gitsync.AnnotationCommit, gitsync.AnnotationPath, gitsync.AnnotationCommitTime} {
		if v, ok := ro.Annotations[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
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
// the stable and canary revisions' pods are available, and of each extra
// revision's (by revision; a ReplicaSet being deleted counts none).
// Missing ReplicaSets count zero.
func Readiness(owned map[string]*appsv1.ReplicaSet, stable, canary string) *engine.Workload {
	avail := func(rev string) int32 {
		if rs := owned[rev]; rev != "" && rs != nil {
			return rs.Status.AvailableReplicas
		}
		return 0
	}
	w := &engine.Workload{StableAvailable: avail(stable), CanaryAvailable: avail(canary)}
	for rev, rs := range owned {
		if !isExtra(rs) || rs.DeletionTimestamp != nil {
			continue
		}
		if w.ExtraAvailable == nil {
			w.ExtraAvailable = map[string]int32{}
		}
		w.ExtraAvailable[rev] = rs.Status.AvailableReplicas
	}
	return w
}

// Changes are what makes the ReplicaSets match the engine's scale.
type Changes struct {
	// Create are the ReplicaSets of wanted revisions that do not exist
	// and can be built: the spec's revision, and extra revisions.
	Create []*appsv1.ReplicaSet
	// Scale are existing ReplicaSets whose replicas must change.
	Scale []Resize
	// Delete are ReplicaSets at zero beyond the history bound, and extra
	// revisions' ReplicaSets that are no longer wanted.
	Delete []*appsv1.ReplicaSet
	// Missing are wanted revisions that have no ReplicaSet and cannot get
	// one: their template is no longer in the spec (someone deleted it).
	Missing []string
	// Unbuildable says why wanted extra revisions without a ReplicaSet
	// cannot get one (the revision they derive from has no template).
	Unbuildable []error
}

// Resize sets one ReplicaSet's replicas.
type Resize struct {
	ReplicaSet *appsv1.ReplicaSet
	Replicas   int32
}

// Plan compares the owned ReplicaSets with the engine's scale. ro's status
// must be the one the scale came with (the engine's Output.Status, as
// persisted): its extra revisions say how to build theirs. Revisions the
// scale does not list run no replicas; of those, the history newest are
// kept and older ones deleted, but never the spec's own revision, whose
// ReplicaSet an aborted rollout's retry reuses. Extra revisions the scale
// does not list are deleted at once (extra.go).
func Plan(ro *v1alpha1.Rollout, owned map[string]*appsv1.ReplicaSet, scale []engine.Scale, specRevision string, history int) Changes {
	var ch Changes
	want := map[string]bool{}
	for _, s := range scale {
		want[s.Revision] = true
		if rs := owned[s.Revision]; rs != nil {
			if replicas(rs) != s.Replicas {
				ch.Scale = append(ch.Scale, Resize{ReplicaSet: rs, Replicas: s.Replicas})
			}
			continue
		}
		if s.Revision == specRevision && ro.Spec.Template != nil {
			ch.Create = append(ch.Create, ReplicaSet(ro, s.Revision, s.Replicas))
			continue
		}
		switch rs, ok, err := buildExtra(ro, owned, s.Revision, specRevision, s.Replicas); {
		case !ok:
			ch.Missing = append(ch.Missing, s.Revision)
		case err != nil:
			ch.Unbuildable = append(ch.Unbuildable, err)
		default:
			ch.Create = append(ch.Create, rs)
		}
	}
	var idle, extras []*appsv1.ReplicaSet
	for rev, rs := range owned {
		switch {
		case want[rev]:
		case isExtra(rs) && rev != specRevision:
			if rs.DeletionTimestamp == nil {
				extras = append(extras, rs)
			}
		default:
			if replicas(rs) != 0 {
				ch.Scale = append(ch.Scale, Resize{ReplicaSet: rs, Replicas: 0})
			}
			if rev != specRevision {
				idle = append(idle, rs)
			}
		}
	}
	sort.Slice(ch.Scale, func(i, j int) bool { return ch.Scale[i].ReplicaSet.Name < ch.Scale[j].ReplicaSet.Name })
	sort.Slice(extras, func(i, j int) bool { return extras[i].Name < extras[j].Name })
	ch.Delete = append(beyondHistory(idle, history), extras...)
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
