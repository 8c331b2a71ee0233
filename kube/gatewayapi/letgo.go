package gatewayapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Letting go without the process that wrote. The Publisher remembers
// the routes it wrote for each Rollout, but a new leader, or a
// controller that was not running when a Rollout was deleted or stopped
// naming a route, remembers nothing. The routes remember: each carries a
// record per Rollout (annotation AnnotationManagedRules) on a route
// labelled LabelRouting. So a Rollout's first Publish in a process adopts
// the routes that record it, and releases those its routers no longer
// name; a deleted Rollout's Forget looks for its records too; and Sweep,
// run once by each new leader, releases the records of Rollouts that no
// longer exist.

// kinds are the route kinds Sluice writes.
var kinds = []Kind{HTTPRoute, GRPCRoute}

// recorded lists, per Rollout name, the routes in namespace ns ("": all)
// that hold its record, of the kinds the cluster serves.
func (w *Writer) recorded(ctx context.Context, ns string) (map[types.NamespacedName][]routeRef, error) {
	out := map[types.NamespacedName][]routeRef{}
	for _, k := range kinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(k.GroupVersionKind().GroupVersion().WithKind(string(k) + "List"))
		opts := []client.ListOption{client.MatchingLabels{LabelRouting: routingValue}}
		if ns != "" {
			opts = append(opts, client.InNamespace(ns))
		}
		err := w.c.List(ctx, list, opts...)
		switch {
		case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
			continue // the CRD is not installed: nothing was written
		case err != nil:
			return nil, fmt.Errorf("listing the %ss Sluice wrote: %w", k, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			recs, err := readRecords(u)
			if err != nil {
				w.log.Error(err, "a route's record cannot be read; it is left alone", "kind", k, "namespace", u.GetNamespace(), "name", u.GetName())
				continue
			}
			for ro := range recs {
				key := types.NamespacedName{Namespace: u.GetNamespace(), Name: ro}
				out[key] = append(out[key], routeRef{kind: k, namespace: u.GetNamespace(), name: u.GetName()})
			}
		}
	}
	return out, nil
}

// adopt makes the routes that record key's Rollout the Publisher's, so
// that release lets go of those its routers stopped naming while no
// controller (or another leader) ran. The routes of a namespace are
// listed once per process, at its first Rollout's first Publish.
func (p *Publisher) adopt(ctx context.Context, key types.NamespacedName) error {
	p.mu.Lock()
	found, listed := p.adopted[key.Namespace]
	p.mu.Unlock()
	if !listed {
		var err error
		if found, err = p.Writer.recorded(ctx, key.Namespace); err != nil {
			return err
		}
		p.mu.Lock()
		p.adopted[key.Namespace] = found
		p.mu.Unlock()
	}
	p.mu.Lock()
	refs := found[key]
	delete(found, key)
	p.mu.Unlock()
	for _, ref := range refs {
		p.remember(key, ref)
	}
	return nil
}

// Sweep releases, in each of namespaces (none: all), the records of
// Rollouts that no longer exist: Rollouts deleted while no controller
// ran, or before a new leader wrote their routes. Run it once when
// leading starts; exists tells whether a Rollout is still there.
func (p *Publisher) Sweep(ctx context.Context, namespaces []string, exists func(context.Context, types.NamespacedName) (bool, error)) error {
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var errs []error
	for _, ns := range namespaces {
		found, err := p.Writer.recorded(ctx, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys := make([]types.NamespacedName, 0, len(found))
		for k := range found {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b types.NamespacedName) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
		for _, key := range keys {
			ok, err := exists(ctx, key)
			if err != nil {
				errs = append(errs, fmt.Errorf("is rollout %s still there: %w", key, err))
				continue
			}
			if ok {
				continue
			}
			for _, ref := range found[key] {
				if err := p.Writer.Release(ctx, ref.kind, ref.namespace, ref.name, key.Name); err != nil {
					errs = append(errs, err)
					continue
				}
				p.Writer.log.Info("released the route of a Rollout deleted while this controller did not lead", "rollout", key, "kind", ref.kind, "route", ref.name)
			}
		}
	}
	return errors.Join(errs...)
}

// RolloutExists is Sweep's exists for a client that reads Rollouts.
func RolloutExists(r client.Reader) func(context.Context, types.NamespacedName) (bool, error) {
	return func(ctx context.Context, key types.NamespacedName) (bool, error) {
		err := r.Get(ctx, key, &v1alpha1.Rollout{})
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err):
			return false, nil
		}
		return false, err
	}
}
