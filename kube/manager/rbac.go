package manager

// The permissions of `sluice controller`, in one place so they can be read
// and reviewed as a whole. `make generate` turns these markers into
// crds/rbac/role.yaml (controller-gen rbac); crds/generate_test.go fails
// when it is stale, and the end-to-end test runs the controller as the
// service account bound to exactly this role, so a missing verb fails a test
// instead of a production rollout.
//
// Rollouts and AnalysisTemplates: read, and (Git applier) created and
// updated with server-side apply; a template that left Git is deleted.
// +kubebuilder:rbac:groups=sluice.dev,resources=rollouts;analysistemplates,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=sluice.dev,resources=rollouts/status,verbs=get;patch;update
//
// GitSources: watched by the leader, which runs one Git applier per
// GitSource, holds a finalizer on each (so a deleted GitSource's objects
// are marked removed from Git first) and writes their status; every
// replica's push webhook reads them and patches the
// sluice.dev/requested-sync annotation.
// +kubebuilder:rbac:groups=sluice.dev,resources=gitsources,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=sluice.dev,resources=gitsources/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=sluice.dev,resources=gitsources/finalizers,verbs=update
//
// AnalysisRuns: created, terminated and collected by the Rollout
// controller, measured by the analysis controller.
// +kubebuilder:rbac:groups=sluice.dev,resources=analysisruns,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=sluice.dev,resources=analysisruns/status,verbs=get;patch;update
//
// One ReplicaSet and one headless Service per revision, owned by the
// Rollout (ReplicaSet) and by the ReplicaSet (Service).
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
//
// Endpoints of each revision for xDS, read only.
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
//
// Istio routing: the VirtualService/DestinationRule Git declares, merged
// with the traffic plan, and the ones Sluice renders itself; listed and
// watched (those labelled sluice.dev/routing only) so an unchanged plan
// costs no request and an edit by hand is corrected at once.
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;update;patch;delete
//
// Gateway API routing: the HTTPRoutes and GRPCRoutes a Rollout's routers
// name, whose named rules Sluice changes with server-side apply (patch),
// created only when the router says create; listed and watched (those
// labelled sluice.dev/routing only) for drift and for the gateways'
// status, which acknowledges a step (read with the route: no access to
// the status subresource is needed). Never updated, never deleted: a
// route Sluice created goes with its Rollout (owner reference).
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes,verbs=get;list;watch;patch;create
//
// Credentials an AnalysisTemplate references (bearer token, basic auth)
// and a GitSource's secretRef (Git credentials, webhook secret), read one
// at a time, never listed or watched. Bind the ClusterRole with
// RoleBindings instead of the ClusterRoleBinding to confine this to
// chosen namespaces.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
//
// Events for every step, promotion, abort and rollback.
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
//
// Leader election, in the controller's own namespace only.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=sluice-system,resources=leases,verbs=get;list;watch;create;update;patch;delete
//
// Each replica's report of its xDS clients (sluice-xds-<replica>), written
// with server-side apply, read by the leader, deleted on shutdown or by
// the leader once stale; in the controller's own namespace only.
// +kubebuilder:rbac:groups="",namespace=sluice-system,resources=configmaps,verbs=get;list;watch;create;patch;delete
//
// xDS authentication: each stream's service-account token is verified
// with a TokenReview; the self-managed xDS CA lives in a Secret of the
// controller's namespace (created and rotated by the leader, read by
// every replica) and its bundle in the ConfigMap sluice-xds-ca (patched,
// as the reports are).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups="",namespace=sluice-system,resources=secrets,verbs=get;create;update
//
// The web dashboard (dashboard.go), on every replica: a viewer's token is
// checked with a TokenReview (above), each of their reads and commands
// first with a SubjectAccessReview for them; a Rollout's page lists its
// Events, once the viewer's own right to list them is confirmed.
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=list
