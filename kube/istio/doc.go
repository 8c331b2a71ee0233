// Package istio writes Sluice's traffic plans as Istio VirtualService and
// DestinationRule objects in controller mode.
//
// Three parts:
//
//   - Render is a pure function: the traffic plan (rollout/plan, the only
//     routing input), the objects as Git declares them (either may be nil),
//     the managed route names and the live objects give the objects to
//     write. Sluice replaces exactly the managed HTTP routes with the
//     plan's routes and sets the plan's subsets (stable, canary and any
//     extra revision's, whose names it records so as to remove them once
//     the plan drops them); every other route and field stays as
//     declared. With nothing declared it renders objects of its own,
//     owned by the Rollout.
//   - Writer reads the live objects, renders, and applies them with
//     server-side apply under one field manager ("sluice"): the
//     DestinationRule first, then the VirtualService, then it deletes a
//     preview VirtualService the plan no longer has. Its error maps to the
//     engine's data-plane observation (Acknowledgement) for the case with
//     no xDS client connected.
//   - Publisher is the reconciler's Publisher: it builds the Writer's
//     input from a Rollout and what Git declares for it (Declarations,
//     the Git applier's), and hands the Writer every publish.
//
// A cached Writer (NewCachedWriter) remembers its last write per Rollout
// and skips a write whose input and live objects, as an informer cache of
// the objects it labelled shows them, are unchanged. As a leader-only
// Runnable it watches that cache and wakes the Rollout whose objects
// someone else changed, so the next reconcile writes them again. It reads
// the live objects from that cache too (from the API server only what the
// cache lacks, or after a write lost a race), so a step costs no read.
//
// Every Writer applies the DestinationRule only when the write would
// change it (its subsets change when a rollout starts and at promotion,
// not at each step); its sluice.dev/plan-version is then the plan that
// last changed it, while the VirtualService's is always the current one.
//
// Istio's CRDs declare spec.http and spec.subsets as atomic lists, so
// server-side apply cannot give one route to Sluice and the next to another
// field manager. Render makes up for it with a three-way rule recorded on
// the object (AnnotationDeclaredHash, AnnotationManagedRoutes); docs/istio.md
// explains it with the Bookinfo reviews example.
package istio
