package gitapply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// applyWorkers bounds the writes in flight: a commit of thousands of
// Rollouts goes out in seconds without flooding the API server.
const applyWorkers = 8

// object is a desired object in its namespace (the manifest's, or the
// default).
type object struct {
	gitsync.Desired
	ns string
}

func (o object) key() key { return key{o.Kind(), o.ns, o.Meta().GetName()} }

// commit is one snapshot, sorted for applying.
type commit struct {
	snap *gitsync.Snapshot
	// source is the ID of the Applier's source (AnnotationSource).
	source                    string
	rollouts, templates, mesh []object
	// wanted holds every desired object's key.
	wanted map[key]bool
}

func (a *Applier) sort(snap *gitsync.Snapshot) commit {
	c := commit{snap: snap, source: a.opts.SourceID, wanted: make(map[key]bool, len(snap.Objects))}
	for _, d := range snap.Objects {
		o := object{Desired: d, ns: d.Meta().GetNamespace()}
		if o.ns == "" {
			o.ns = a.opts.DefaultNamespace
		}
		c.wanted[o.key()] = true
		switch {
		case d.Rollout != nil:
			c.rollouts = append(c.rollouts, o)
		case d.AnalysisTemplate != nil:
			c.templates = append(c.templates, o)
		case d.Istio != nil:
			c.mesh = append(c.mesh, o)
		}
	}
	return c
}

// apply puts one snapshot into the cluster, in the order the package
// documentation gives. It goes on past failures, so one object the API
// server refuses does not hold back the others, and returns them all.
func (a *Applier) apply(ctx context.Context, snap *gitsync.Snapshot) error {
	c := a.sort(snap)
	var live v1alpha1.RolloutList
	if err := a.c.List(ctx, &live); err != nil {
		err = fmt.Errorf("listing Rollouts: %w", err)
		a.setApplied("", err)
		return err
	}
	var templates v1alpha1.AnalysisTemplateList
	if err := a.c.List(ctx, &templates); err != nil {
		err = fmt.Errorf("listing AnalysisTemplates: %w", err)
		a.setApplied("", err)
		return err
	}
	named := references(c.rollouts, live.Items)

	// Objects another source holds are left to it, and reported.
	var errs []error
	c.rollouts = c.unclaimed(c.rollouts, liveIndex(live.Items), &errs)
	c.templates = c.unclaimed(c.templates, liveIndex(templates.Items), &errs)
	errs = append(errs, a.each(ctx, c.templates, a.applyTemplate)...)
	var plain []object
	decl := map[key]declared{}
	for _, o := range c.mesh {
		if !named[o.key()] {
			plain = append(plain, o)
			continue
		}
		d, err := decode(o.Istio, o.ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		decl[o.key()] = d
	}
	errs = append(errs, a.each(ctx, plain, a.applyIstio)...)
	changed, first := a.decl.replace(decl)
	errs = append(errs, a.each(ctx, c.rollouts, func(ctx context.Context, o object) error {
		return a.applyRollout(ctx, o, live.Items)
	})...)
	removed, err := a.markRemoved(ctx, &c, live.Items)
	errs = append(errs, err)
	deleted, err := a.deleteTemplates(ctx, &c, templates.Items)
	errs = append(errs, err)
	a.wakeRollouts(ctx, c.rollouts, live.Items, changed, first)

	err = errors.Join(errs...)
	a.setApplied(snap.Commit.SHA, err)
	a.log.Info("applied commit", "commit", snap.Commit.Short(), "subject", snap.Commit.Subject(),
		"rollouts", len(c.rollouts), "templates", len(c.templates), "istio", len(plain), "declared", len(decl),
		"declarationsChanged", len(changed), "removedRollouts", removed, "deletedTemplates", deleted, "failed", err != nil)
	return err
}

// references lists the Istio objects that Rollouts name, in Git or only in
// the cluster (a Rollout retired after leaving Git still publishes, as
// does one applied by other means): the Publisher writes those, so the
// Applier must not.
func references(desired []object, live []v1alpha1.Rollout) map[key]bool {
	out := map[key]bool{}
	for _, o := range desired {
		for _, k := range named(o.ns, &o.Rollout.Spec.Service) {
			out[k] = true
		}
	}
	for i := range live {
		if live[i].DeletionTimestamp.IsZero() {
			for _, k := range named(live[i].Namespace, &live[i].Spec.Service) {
				out[k] = true
			}
		}
	}
	return out
}

// named lists the Istio objects a Rollout's service names.
func named(ns string, svc *v1alpha1.ServiceSpec) []key {
	var out []key
	if vs := svc.VirtualService; vs != nil {
		out = append(out, key{manifest.KindVirtualService, ns, vs.Name})
	}
	if dr := svc.DestinationRule; dr != nil {
		out = append(out, key{manifest.KindDestinationRule, ns, dr.Name})
	}
	return out
}

// each runs fn on every object with applyWorkers at a time and returns
// the errors.
func (a *Applier) each(ctx context.Context, objs []object, fn func(context.Context, object) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, applyWorkers)
	for _, o := range objs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, o); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

func (a *Applier) applyTemplate(ctx context.Context, o object) error {
	return a.ssa(ctx, v1alpha1.GroupVersion.WithKind(manifest.KindAnalysisTemplate), o, o.AnalysisTemplate.Labels, o.AnalysisTemplate.Annotations, o.AnalysisTemplate.Spec)
}

func (a *Applier) applyIstio(ctx context.Context, o object) error {
	gvk := schema.FromAPIVersionAndKind(o.Istio.APIVersion, o.Istio.Kind)
	var spec any
	if len(o.Istio.Spec) > 0 {
		spec = json.RawMessage(o.Istio.Spec)
	}
	return a.ssa(ctx, gvk, o, o.Istio.Labels, o.Istio.Annotations, spec)
}

// applyRollout applies a Rollout and, if it carries the removal mark (it
// left Git and is back), clears the mark, which makes the reconciler
// manage it again.
func (a *Applier) applyRollout(ctx context.Context, o object, live []v1alpha1.Rollout) error {
	if err := a.ssa(ctx, v1alpha1.GroupVersion.WithKind(manifest.KindRollout), o, o.Rollout.Labels, o.Rollout.Annotations, o.Rollout.Spec); err != nil {
		return err
	}
	name := o.Rollout.Name
	for i := range live {
		ro := &live[i]
		if ro.Namespace != o.ns || ro.Name != name {
			continue
		}
		if _, marked := ro.Annotations[gitsync.AnnotationRemovedFromGit]; !marked {
			return nil
		}
		if err := a.markRollout(ctx, ro, nil); err != nil {
			return err
		}
		a.log.Info("Rollout back in Git: managed again", "rollout", o.ns+"/"+name, "commit", o.Provenance.Commit)
	}
	return nil
}

// ssa server-side applies an object as Git declares it: its labels, its
// annotations with the Git provenance, and its spec, as field manager
// FieldManager with ownership forced (Git is the source of truth for what
// it declares).
func (a *Applier) ssa(ctx context.Context, gvk schema.GroupVersionKind, o object, labels, declared map[string]string, spec any) error {
	k := o.key()
	u := &unstructured.Unstructured{Object: map[string]any{}}
	if spec != nil {
		b, err := json.Marshal(spec)
		if err != nil {
			return fmt.Errorf("encoding the spec of %s: %w", k, err)
		}
		var m map[string]any
		if err := utiljson.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("decoding the spec of %s: %w", k, err)
		}
		u.Object["spec"] = m
	}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(o.ns)
	u.SetName(k.name)
	u.SetLabels(labels)
	u.SetAnnotations(annotations(declared, o.Desired, a.opts.SourceID))
	if err := a.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s from %s:%d: %w", k, o.File, o.Line, err)
	}
	return nil
}

// annotations are the manifest's annotations with the Git provenance; Git
// cannot set the ones Sluice writes itself.
func annotations(declared map[string]string, d gitsync.Desired, source string) map[string]string {
	out := maps.Clone(declared)
	if out == nil {
		out = map[string]string{}
	}
	delete(out, gitsync.AnnotationRemovedFromGit)
	maps.Copy(out, d.Annotations())
	out[AnnotationSource] = source
	return out
}

// markRemoved marks the Rollouts of this source that the commit lacks, so
// the reconciler retires them. The first commit that lacks one is the one
// the mark names: a Rollout already marked keeps its mark.
func (a *Applier) markRemoved(ctx context.Context, c *commit, live []v1alpha1.Rollout) (int, error) {
	var errs []error
	n := 0
	for i := range live {
		ro := &live[i]
		k := key{manifest.KindRollout, ro.Namespace, ro.Name}
		if c.wanted[k] || !c.ours(ro) || !ro.DeletionTimestamp.IsZero() {
			continue
		}
		if _, marked := ro.Annotations[gitsync.AnnotationRemovedFromGit]; marked {
			continue
		}
		sha := c.snap.Commit.SHA
		if err := a.markRollout(ctx, ro, &sha); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		a.log.Info("Rollout removed from Git: marked; it will be retired with its traffic at 100% stable and its routes kept",
			"rollout", ro.Namespace+"/"+ro.Name, "commit", c.snap.Commit.Short())
	}
	return n, errors.Join(errs...)
}

// markRollout sets the removal mark to commit, or clears it when commit is
// nil. It is a merge patch, not an apply: an apply of the mark alone would
// drop the spec this field manager owns.
func (a *Applier) markRollout(ctx context.Context, live *v1alpha1.Rollout, commit *string) error {
	// A copy: the patch decodes the answer into it, and live is shared.
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: live.Namespace, Name: live.Name}}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]*string{gitsync.AnnotationRemovedFromGit: commit},
	}})
	if err != nil {
		return fmt.Errorf("encoding the removal mark of rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	if err := a.c.Patch(ctx, ro, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldManager)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("setting the removal mark of rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	return nil
}

// deleteTemplates deletes the AnalysisTemplates of this source that the
// commit lacks. Unlike a Rollout, a template routes nothing: what Git no
// longer has is gone.
func (a *Applier) deleteTemplates(ctx context.Context, c *commit, live []v1alpha1.AnalysisTemplate) (int, error) {
	var errs []error
	n := 0
	for i := range live {
		t := &live[i]
		if c.wanted[key{manifest.KindAnalysisTemplate, t.Namespace, t.Name}] || !c.ours(t) || !t.DeletionTimestamp.IsZero() {
			continue
		}
		uid := t.UID
		if err := a.c.Delete(ctx, t, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting AnalysisTemplate %s/%s, removed from Git: %w", t.Namespace, t.Name, err))
			continue
		}
		n++
		a.log.Info("AnalysisTemplate removed from Git: deleted", "template", t.Namespace+"/"+t.Name, "commit", c.snap.Commit.Short())
	}
	return n, errors.Join(errs...)
}

// wakeRollouts asks the reconciler to publish again for the Rollouts whose
// declarations changed (their plan may be the same, but what it merges
// into is not), and after the first commit for every Rollout, whose
// publish waited for it.
func (a *Applier) wakeRollouts(ctx context.Context, desired []object, live []v1alpha1.Rollout, changed []key, first bool) {
	if !a.wakeWanted.Load() || (!first && len(changed) == 0) {
		return
	}
	hit := map[key]bool{}
	for _, k := range changed {
		hit[k] = true
	}
	seen := map[types.NamespacedName]bool{}
	wake := func(ns, name string, svc *v1alpha1.ServiceSpec) {
		nn := types.NamespacedName{Namespace: ns, Name: name}
		if seen[nn] || !(first || slices.ContainsFunc(named(ns, svc), func(k key) bool { return hit[k] })) {
			return
		}
		seen[nn] = true
		ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		select {
		case a.wake <- event.GenericEvent{Object: ro}:
		case <-ctx.Done():
		}
	}
	for _, o := range desired {
		wake(o.ns, o.Rollout.Name, &o.Rollout.Spec.Service)
	}
	for i := range live {
		wake(live[i].Namespace, live[i].Name, &live[i].Spec.Service)
	}
}
