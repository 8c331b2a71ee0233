// Package gitsync is Sluice's Git source: it keeps a mirror of a
// repository, follows a branch, tag or fixed commit, loads the Rollouts,
// AnalysisTemplates and Istio VirtualServices and DestinationRules under a
// path of each new commit, and hands the
// resulting desired state to a consumer (the standalone runner or the
// Kubernetes applier). After an automatic rollback it can commit the
// stable revision back to Git.
//
// # Whole commits
//
// A commit is applied whole or not at all. Every manifest file is loaded
// with rollout/manifest (strict decoding, validation, file:line
// positions); one problem anywhere rejects the commit, and State.Applied
// stays the last good commit while State.Err names the rejected one and
// its problems. A Syncer records the last good commit in its mirror
// (refs/sluice/applied), so a restart onto a rejected head, or while the
// remote cannot be fetched, still serves it.
//
// # Fetch limits
//
// FetchLimits bound what a fetch downloads (limits.go, packscan.go). A
// fetch stopped by one keeps nothing; the mirror remembers the remote tip
// it was for and the limits in force (refused.go, also on disk), and
// until either changes a poll only reads the remote's refs and reports
// the same refusal.
//
// # The consumer contract
//
// A Snapshot is complete: it lists every object the commit wants. A
// consumer applies Snapshot.Objects and, for a Rollout it manages that is
// no longer there (Snapshot.Removed lists them relative to the previous
// snapshot; after a restart the consumer compares with what it manages):
//
//   - stops managing it: no new steps, analysis runs stopped;
//   - leaves its traffic at 100% to the stable revision, never removing
//     routes abruptly (clients would get errors, not the old version);
//   - reports it (status, event, log) as removed from Git, with the commit.
//
// Removing the routes themselves is an explicit act (deleting the object
// in controller mode, `sluice` commands in standalone mode).
//
// Objects in a Snapshot are shared with gitsync's cache: treat them as
// read-only and DeepCopy before changing them.
//
// # Concurrency
//
// Run polls and listens for Trigger (the webhook calls it). State and
// Watch may be called from any goroutine. Revert may run beside Run; the
// two take turns on the mirror.
package gitsync
