// Package gitsource is the GitSource controller of controller mode: each
// GitSource (sluice.dev/v1alpha1) gets a kube/gitapply.Applier of its
// own, run on the leader, registered in a gitapply.Sources so that the
// Rollout reconciler's write-back and the Istio Publisher's declarations
// go to the source each Rollout came from.
//
// Tenancy: a GitSource applies only to its own namespace. Manifests that
// name no namespace go there; one that names another rejects the whole
// commit (gitsync.Options.Namespace), reported in status.problems at the
// file and line of metadata.namespace, and the last good commit stays in
// force. Objects carry their source (gitapply.AnnotationSource), so one
// source never retires, deletes or takes over another's.
//
// Deleting a GitSource is deleting its files: a finalizer holds it until
// its Rollouts are marked removed from Git (the reconciler retires them:
// traffic on stable, routes kept) and its AnalysisTemplates are deleted.
//
// The push webhook (Webhook) runs on every replica and only stamps the
// sluice.dev/requested-sync annotation; the leader's watch syncs at once.
package gitsource
