package gitapply

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/gitsync"
)

// AnnotationSource names the source that applied an object, beside the
// gitsync.Annotation* provenance: "<namespace>/<name>" of a GitSource, or
// ConfigSourceID for the source of the configuration file. Removal
// (retiring a Rollout, deleting a template) and write-back only ever
// consider the objects of one source, so two sources never retire each
// other's Rollouts, and an object one source holds is not taken over by
// another (a Conflict on the second one's status).
const AnnotationSource = "sluice.dev/git-source"

// ConfigSourceID is the source ID of the Git source of `sluice
// controller`'s configuration file (the `git` section, or flags).
const ConfigSourceID = "config"

// GitSourceID is the source ID of the GitSource namespace/name.
func GitSourceID(namespace, name string) string { return namespace + "/" + name }

// SourceOf returns the ID of the source that applied obj: its
// AnnotationSource; for an object applied before that annotation existed
// (it has Git provenance but no source), ConfigSourceID, the only source
// there was; "" for an object no source applied (kubectl, Argo CD).
func SourceOf(obj metav1.Object) string {
	an := obj.GetAnnotations()
	if id := an[AnnotationSource]; id != "" {
		return id
	}
	if an[gitsync.AnnotationRepository] != "" {
		return ConfigSourceID
	}
	return ""
}

// describeSource names a source ID for messages.
func describeSource(id string) string {
	if id == ConfigSourceID {
		return "the controller's configured Git source"
	}
	return "GitSource " + id
}

// ours reports whether the Applier put obj in the cluster from this
// source. A GitSource's objects are those that carry its ID. The
// configuration file's source also claims objects it applied before
// sources had IDs: same repository, a file under the source's path.
func (c *commit) ours(obj metav1.Object) bool {
	id := SourceOf(obj)
	if id != c.source {
		return false
	}
	if id != ConfigSourceID || obj.GetAnnotations()[AnnotationSource] != "" {
		return true
	}
	return c.fromRepository(obj)
}

// fromRepository reports whether obj's provenance names the commit's
// repository and a file under its path.
func (c *commit) fromRepository(obj metav1.Object) bool {
	an := obj.GetAnnotations()
	if an[gitsync.AnnotationRepository] != c.snap.Repository {
		return false
	}
	p, root := an[gitsync.AnnotationPath], c.snap.Path
	return root == "." || p == root || strings.HasPrefix(p, root+"/")
}

// ConflictError is an object of the commit that another source holds.
// The Applier leaves it alone: taking it over would make the two sources
// overwrite each other at every sync.
type ConflictError struct {
	// Object is "Kind namespace/name"; Owner the other source's ID.
	Object, Owner string
	File          string
	Line          int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s (%s:%d) is applied by %s; remove it from one of the two sources", e.Object, e.File, e.Line, describeSource(e.Owner))
}

// claimable reports whether this source may apply over live, an object of
// the same kind, namespace and name: it is its own, no source's (kubectl
// or the like: Git takes it over, as a forced apply always did), or one
// its source released by marking it removed from Git.
func (c *commit) claimable(live metav1.Object) bool {
	owner := SourceOf(live)
	if owner == "" || owner == c.source {
		return true
	}
	_, released := live.GetAnnotations()[gitsync.AnnotationRemovedFromGit]
	return released
}

// conflict returns the ConflictError of applying o over live, or nil.
func (c *commit) conflict(o object, live metav1.Object) error {
	if live == nil || c.claimable(live) {
		return nil
	}
	return &ConflictError{Object: o.key().String(), Owner: SourceOf(live), File: o.File, Line: o.Line}
}

// liveIndex indexes live objects by namespace and name.
func liveIndex[T any, PT interface {
	*T
	metav1.Object
}](items []T) map[types.NamespacedName]metav1.Object {
	out := make(map[types.NamespacedName]metav1.Object, len(items))
	for i := range items {
		o := PT(&items[i])
		out[types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}] = o
	}
	return out
}

// unclaimed returns the objects of objs this source may apply, adding a
// ConflictError to errs for each of the others.
func (c *commit) unclaimed(objs []object, live map[types.NamespacedName]metav1.Object, errs *[]error) []object {
	out := objs[:0:0]
	for _, o := range objs {
		if err := c.conflict(o, live[types.NamespacedName{Namespace: o.ns, Name: o.Meta().GetName()}]); err != nil {
			*errs = append(*errs, err)
			continue
		}
		out = append(out, o)
	}
	return out
}
