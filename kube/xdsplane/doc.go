// Package xdsplane runs Sluice's xDS server inside the Kubernetes
// manager. docs/controller.md ("xDS in the manager") describes the
// behaviour; this comment the parts:
//
//   - EndpointSlices is the xds.EndpointSource: a revision's endpoints are
//     the ready addresses of the EndpointSlices labelled with its service
//     and revision, which the cluster derives from the per-revision
//     headless Services the reconciler makes (workload.Service).
//   - Plane holds every Rollout's current plan, ordered by the
//     resourceVersion it came from, and publishes the complete set to the
//     xds.Server. It is the leader reconciler's Publisher and Acknowledger,
//     and wakes the reconciler when proxies answer, and while some stay
//     silent, when who has answered changes (internal/ackwatch).
//   - Feeder runs on every replica and feeds the Plane from Rollout status
//     (engine.PersistedPlan), so followers serve what the leader decided.
//   - Runnable serves the xds.Server on every replica.
//   - Reporter writes, on every replica, what its tracker knows of its
//     clients to a ConfigMap of its own (Report); Reports reads the
//     others' for the leader's Plane, which counts the clients of every
//     replica when it answers (aggregate), and deletes stale ones.
//
// It adapts the xds package to controller-runtime, which xds itself never
// imports.
package xdsplane
