package xds

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/sluicehq/sluice/rollout/plan"
)

// stage keeps plans as the set to publish once a node identifies
// (Options.StageWithoutClients), after the checks a publish makes, so a
// bad plan is refused now, to the caller that gave it, and not later
// when nobody is there to hear it: the set is checked for conflicts
// (two plans of a service, a host routed twice), and each plan whose
// version the kept set does not hold is translated, validated and
// assembled on its own. A plan only conflicts with others through its
// service and hosts, which the set check covers, so checking the changed
// plans alone costs what they cost, not what the whole set does.
//
// The caller holds pub and has seen no stream open.
func (s *Server) stage(plans []plan.Plan) error {
	sorted := slices.Clone(plans)
	slices.SortFunc(sorted, func(a, b plan.Plan) int { return cmp.Compare(PlanKey(&a), PlanKey(&b)) })
	// The kept plans passed these checks when they were kept: of them,
	// only their conflicts with the others are looked at again.
	kept := make(map[string]string, len(s.plans))
	for i := range s.plans {
		kept[PlanKey(&s.plans[i])] = s.plans[i].Version
	}
	if err := checkPlans(sorted, kept); err != nil {
		return fmt.Errorf("translate: %w", err)
	}
	var changed []plan.Plan
	for i := range sorted {
		if v, ok := kept[PlanKey(&sorted[i])]; !ok || v != sorted[i].Version {
			changed = append(changed, sorted[i])
		}
	}
	if len(changed) > 0 {
		res, err := translate(changed, s.opts.Endpoints, s.opts.Translate, nil, nil)
		if err != nil {
			return err
		}
		services := ownerServices(changed)
		for _, g := range groups {
			b, err := buildBase(g, res.Group(g), services, nil, map[types.Resource]string{})
			if err != nil {
				return err
			}
			if _, _, err := b.view(allView, allScope); err != nil {
				return err
			}
		}
	}
	owners := make(map[ownerKey]string, 2*len(plans))
	for i := range plans {
		p := &plans[i]
		owners[serviceOwner(PlanKey(p))] = p.Version
		for _, h := range p.Hosts {
			owners[hostOwner(h.Name)] = p.Version
		}
	}
	s.plans, s.staged = slices.Clone(plans), true
	s.stagedOwners.Store(&owners)
	s.metrics.publishes.WithLabelValues("staged").Inc()
	return nil
}

// publishStaged publishes the staged set whole; ensureView calls it when
// a node identifies, before its first watch reaches the cache. A failure
// (endpoints that cannot be read now) keeps the set staged for the next
// publish, and the node gets the last published snapshot, if any.
func (s *Server) publishStaged() {
	if !s.staged {
		return
	}
	if err := s.publishLocked(context.Background(), s.plans); err != nil {
		s.log.Error("xds: publishing the staged plans for the first node failed; it is served the last published ones", "err", err)
	}
}
