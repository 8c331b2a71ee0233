package workload

import (
	"fmt"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Extra revisions (status.extraRevisions: an experiment, a fresh baseline
// of stable, a version pinned for some users) run as ReplicaSets of their
// own next to stable's and the canary's. Each is built from the pod
// template its step derives from, the stable revision's (the stable
// ReplicaSet's template) or the canary's (spec.template), with the named
// containers' images replaced, and is labelled with its own revision, so
// its per-revision Service, EndpointSlices and DestinationRule subset
// select its pods and nobody else's. Once the engine's scale stops listing
// one it is deleted, not kept as history: it is no version the Rollout
// ran as itself, and status rebuilds it under the same name (its revision
// is a hash of base, name and images) if a retry runs it again.

// LabelExtra names, on an extra revision's ReplicaSet and pods, the extra
// revision it runs (the setRevision step's name). Only extra revisions
// carry it.
const LabelExtra = "sluice.dev/extra-revision"

// ExtraReplicaSet builds the ReplicaSet of extra revision x from base, the
// pod template it derives from: a copy with the images x.Template names
// replaced, labelled with x's revision and name. An image for a container
// base does not have is an error.
func ExtraReplicaSet(ro *v1alpha1.Rollout, x *v1alpha1.ExtraRevisionStatus, base *corev1.PodTemplateSpec, replicas int32) (*appsv1.ReplicaSet, error) {
	if x.Revision == "" || x.Template == nil {
		return nil, fmt.Errorf("extra revision %s has no template (a backend runs it in standalone mode only)", x.Name)
	}
	tmpl := base.DeepCopy()
	names := make([]string, 0, len(x.Template.Images))
	for name := range x.Template.Images {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !setImage(&tmpl.Spec, name, x.Template.Images[name]) {
			return nil, fmt.Errorf("extra revision %s: the %s template has no container %q", x.Name, x.Template.From, name)
		}
	}
	return replicaSet(ro, tmpl, x.Revision, map[string]string{LabelExtra: x.Name}, replicas), nil
}

// setImage replaces the image of the container or init container named
// name and reports whether there was one.
func setImage(spec *corev1.PodSpec, name, image string) bool {
	found := false
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				cs[i].Image, found = image, true
			}
		}
	}
	return found
}

// extraBase is the pod template extra revision x derives from: the spec's
// when its base revision is the spec's (always the case for From: Canary
// while the status is current), else the base revision's ReplicaSet's.
func extraBase(ro *v1alpha1.Rollout, x *v1alpha1.ExtraRevisionStatus, owned map[string]*appsv1.ReplicaSet, specRevision string) (*corev1.PodTemplateSpec, error) {
	from, base := v1alpha1.RevisionFromStable, ro.Status.StableRevision
	if x.Template != nil && x.Template.From == v1alpha1.RevisionFromCanary {
		from, base = v1alpha1.RevisionFromCanary, ro.Status.CanaryRevision
	}
	switch {
	case base == "":
		return nil, fmt.Errorf("extra revision %s: no %s revision to derive it from", x.Name, from)
	case base == specRevision && ro.Spec.Template != nil:
		return ro.Spec.Template, nil
	case owned[base] != nil:
		return &owned[base].Spec.Template, nil
	}
	return nil, fmt.Errorf("extra revision %s: the %s revision %s has no ReplicaSet to derive it from", x.Name, from, base)
}

// buildExtra is the ReplicaSet of the extra revision that status runs as
// revision; ok is false when revision is not one of status's extras.
func buildExtra(ro *v1alpha1.Rollout, owned map[string]*appsv1.ReplicaSet, revision, specRevision string, replicas int32) (rs *appsv1.ReplicaSet, ok bool, err error) {
	i := slices.IndexFunc(ro.Status.ExtraRevisions, func(x v1alpha1.ExtraRevisionStatus) bool { return x.Revision == revision })
	if i < 0 {
		return nil, false, nil
	}
	x := &ro.Status.ExtraRevisions[i]
	base, err := extraBase(ro, x, owned, specRevision)
	if err != nil {
		return nil, true, err
	}
	rs, err = ExtraReplicaSet(ro, x, base, replicas)
	return rs, true, err
}

// isExtra reports whether rs runs an extra revision.
func isExtra(rs *appsv1.ReplicaSet) bool { return rs.Labels[LabelExtra] != "" }
