// Package gitapply is the Git side of controller mode: it runs a
// gitsync.Syncer on the leader and puts each valid commit into the cluster.
//
// For every new snapshot, in this order:
//
//  1. AnalysisTemplates are server-side applied (field manager
//     "sluice-git", forced), with the Git provenance annotations, before
//     the Rollouts that may start runs of them;
//  2. Istio VirtualServices and DestinationRules that no Rollout names are
//     applied the same way, as they are in Git (plain GitOps);
//  3. the ones a Rollout names are not applied: they become the
//     declarations the Istio Publisher merges the traffic plan into, so
//     that one writer owns them and there is never a diff fight; Rollouts
//     whose declarations changed are woken (Wake);
//  4. Rollouts are applied, and one put back in Git loses its removal mark;
//  5. Rollouts of this source that left Git are marked with
//     gitsync.AnnotationRemovedFromGit (the reconciler then retires them:
//     100% stable, routes kept); they are not deleted;
//  6. AnalysisTemplates of this source that left Git are deleted.
//
// "Of this source" means carrying the source's repository in
// gitsync.AnnotationRepository and a gitsync.AnnotationPath under its path,
// so steps 5 and 6 work from what the cluster holds, also after a restart.
// A rejected commit never reaches the Applier (gitsync keeps the last good
// one in force), so it applies and removes nothing. Istio objects that
// leave Git are left in place: deleting routing is an explicit act.
//
// The Applier also performs the engine's GitRevert actions (Revert) with
// gitsync's write-back. It never imports the reconciler: it satisfies
// kube/controller's Reverter and kube/istio's Declarations by method set.
package gitapply
