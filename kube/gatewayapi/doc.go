// Package gatewayapi writes Sluice's traffic plans into Gateway API routes
// (HTTPRoute and GRPCRoute, gateway.networking.k8s.io/v1) in controller
// mode, and reads the gateways' answer from the routes' status.
// docs/gateway-api.md describes the behaviour; this comment the parts:
//
//   - Render is a pure function: the traffic plan (rollout/plan, the only
//     routing input), the router's reference (the route and the rules
//     Sluice manages) and the live route give the server-side apply
//     request. Sluice changes only the managed rules: their backendRefs
//     become the plan's weights between the per-revision Services (the
//     controller's, workload.Service), a copy of the rule narrowed to each
//     header, cookie or method match of the plan goes before it, and a
//     mirror step appends a RequestMirror filter. Every other rule, filter,
//     timeout, hostname and parentRef stays as written. A route Sluice
//     creates (the router's create) is rendered whole and owned by the
//     Rollout.
//   - Writer reads the route from the API server, renders, and applies
//     the result under one field manager ("sluice") when it differs from
//     the live route. A cached Writer (NewCachedWriter) watches the routes
//     it wrote in a cache of its own (NewCache), skips writes that would
//     change nothing, and wakes the Rollout whose route changed: someone
//     else's edit, corrected by the next write, or a gateway's status.
//   - Publisher is the reconciler's Publisher for the routes a Rollout's
//     routers name, and one of its Acknowledgers: a plan version counts
//     once every route holding it has, for every parent, Accepted=True and
//     ResolvedRefs=True observed at the written generation; a False
//     condition is the gateway refusing it, like a proxy's NACK.
//
// The Gateway API declares spec.rules an atomic list, so server-side
// apply cannot give one rule to Sluice and the next to another field
// manager. Render makes up for it: the whole list is applied, rebuilt from
// the live one after undoing Sluice's own last changes, which it records
// on the route (AnnotationManagedRules); see Render and docs/gateway-api.md.
package gatewayapi
