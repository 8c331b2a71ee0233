package gitsync

import (
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Annotations that carry Git provenance on objects Sluice applies in
// controller mode (see Desired.Annotations).
const (
	AnnotationRepository = "sluice.dev/git-repository"
	AnnotationCommit     = "sluice.dev/git-commit"
	AnnotationPath       = "sluice.dev/git-path"
	AnnotationCommitTime = "sluice.dev/git-commit-time"
	// AnnotationRemovedFromGit marks a Rollout whose manifest left Git,
	// with the commit that no longer has it as the value. The controller
	// then retires the Rollout instead of stepping it: traffic at 100% to
	// stable, routes kept, nothing managed any more.
	AnnotationRemovedFromGit = "sluice.dev/removed-from-git"
)

// Commit describes a Git commit.
type Commit struct {
	// SHA is the full hex object name.
	SHA string
	// Time is the committer time: when the commit was made, or last
	// rebased, which orders commits on a branch better than author time.
	Time time.Time
	// Author is "Name <email>".
	Author string
	// Message is the full commit message.
	Message string
}

// Short returns the first 12 characters of the SHA.
func (c Commit) Short() string { return shortSHA(c.SHA) }

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func commitOf(c *object.Commit) Commit {
	return Commit{
		SHA:     c.Hash.String(),
		Time:    c.Committer.When,
		Author:  c.Author.Name + " <" + c.Author.Email + ">",
		Message: c.Message,
	}
}

// Subject is the first line of the message.
func (c Commit) Subject() string {
	s, _, _ := strings.Cut(c.Message, "\n")
	return s
}

// Desired is one object Git says should exist, with where it came from.
//
// The decoded object (Rollout, AnalysisTemplate, or Istio VirtualService
// or DestinationRule) is shared between
// snapshots and with gitsync's cache: treat it as read-only and DeepCopy it
// before changing anything, status included.
type Desired struct {
	manifest.Object
	// Provenance names the repository, commit, file and commit time.
	Provenance v1alpha1.GitProvenance
}

// Annotations returns the provenance as annotations for controller mode.
func (d Desired) Annotations() map[string]string {
	a := map[string]string{
		AnnotationRepository: d.Provenance.Repository,
		AnnotationCommit:     d.Provenance.Commit,
		AnnotationPath:       d.Provenance.Path,
	}
	if d.Provenance.CommitTime != nil {
		a[AnnotationCommitTime] = d.Provenance.CommitTime.UTC().Format(time.RFC3339)
	}
	return a
}

// Ref returns the object's identity.
func (d Desired) Ref() ObjectRef {
	m := d.Meta()
	return ObjectRef{Kind: d.Kind(), Namespace: m.GetNamespace(), Name: m.GetName()}
}

// ObjectRef identifies an object in Git. Namespace is as written in the
// manifest: empty means the consumer's default.
type ObjectRef struct {
	Kind      string
	Namespace string
	Name      string
}

func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Snapshot is the desired state of one valid commit: every Sluice object
// under the source's path, and the Istio VirtualServices and
// DestinationRules beside them, which controller mode applies or merges its
// traffic plans into. It is complete: an object that is not in it is
// not wanted.
type Snapshot struct {
	// Repository is the source URL without credentials.
	Repository string
	// Path is the source's path in the repository.
	Path   string
	Commit Commit
	// Objects in file and document order.
	Objects []Desired
	// Removed lists the objects (of every kind above) of the previous
	// snapshot that this one lacks. It is computed against the previous
	// snapshot of this process only: after a restart, consumers compare
	// Objects with what they manage (see the package documentation).
	Removed []ObjectRef
	// ForcePushedOver is set when the branch was force-pushed: the SHA of
	// the previous head, which this commit does not descend from.
	ForcePushedOver string

	index map[ObjectRef]int
}

// Lookup returns an object by identity.
func (s *Snapshot) Lookup(ref ObjectRef) (Desired, bool) {
	if i, ok := s.index[ref]; ok {
		return s.Objects[i], true
	}
	return Desired{}, false
}

// Rollouts returns the desired Rollouts (shared: read-only).
func (s *Snapshot) Rollouts() []*v1alpha1.Rollout {
	var out []*v1alpha1.Rollout
	for _, d := range s.Objects {
		if d.Rollout != nil {
			out = append(out, d.Rollout)
		}
	}
	return out
}

func newSnapshot(repo, path string, c Commit, objs []manifest.Object) *Snapshot {
	t := metav1.NewTime(c.Time)
	s := &Snapshot{Repository: repo, Path: path, Commit: c,
		Objects: make([]Desired, len(objs)), index: make(map[ObjectRef]int, len(objs))}
	for i, o := range objs {
		s.Objects[i] = Desired{Object: o, Provenance: v1alpha1.GitProvenance{
			Repository: repo, Commit: c.SHA, Path: o.File, CommitTime: &t,
		}}
		s.index[s.Objects[i].Ref()] = i
	}
	return s
}

// removedSince lists the objects of prev that s lacks.
func (s *Snapshot) removedSince(prev *Snapshot) []ObjectRef {
	if prev == nil {
		return nil
	}
	var out []ObjectRef
	for _, d := range prev.Objects {
		if _, ok := s.index[d.Ref()]; !ok {
			out = append(out, d.Ref())
		}
	}
	return out
}
