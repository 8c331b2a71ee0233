// Package store is the durable state of `sluice run` (standalone mode): one
// bbolt file, DefaultFile under the state directory.
//
// # What it holds
//
// Per Rollout (key "namespace/name", or "name" without a namespace):
//   - the status the engine resumes from;
//   - the last traffic plan, which the xDS server serves after a restart
//     before anything advances (Plans);
//   - the state blobs of the Rollout's analysis runs, opaque JSON owned by
//     the analysis package, kept only while status lists the run;
//   - a history of events, the last Options.HistoryLimit (200) of them, for
//     `sluice history`. Delete keeps it; PurgeHistory drops it.
//
// Globally: the Git commit last evaluated and the last good one (GitState),
// and a sequence number that every Rollout written increments.
//
// Manual commands are not stored: their IDs reach status.lastCommand
// through the engine, which is what makes a redelivered command harmless.
//
// # One step, one transaction; one pass, one transaction
//
// Commit writes what one engine step decided for one Rollout (status, plan,
// events, run states, outbox messages) in a single bbolt transaction, and
// refuses a status and a plan whose versions disagree. This is the
// "persist" of the engine's order "persist status, publish plan, act":
// after a crash the file holds either all of a step or none of it, and the
// stored plan is always the one the stored status names, so republishing
// it at startup is safe.
//
// CommitAll does the same for the steps of a whole pass of the runner, in
// one transaction: all of them or none, for one flush instead of one per
// Rollout. A step that changed nothing a reader could see (status, plan and
// run states byte for byte as stored, no events, no messages) is not
// written at all, and a pass in which no step changed anything writes no
// transaction, so a thousand idle Rollouts cost no disk writes.
//
// # Durability
//
// bbolt's defaults are kept: every write transaction is fdatasync'ed (data
// pages, then the meta page) before Commit returns, so a Commit that
// returned survives kill -9 and power loss on a disk that honours flushes.
// A crash in the middle of a Commit leaves the previous transaction: bbolt
// keeps two checksummed meta pages and a torn write only ever touches the
// one not in use. The price is one or two disk flushes per Commit (a few
// hundred microseconds on an SSD, several milliseconds on a network disk;
// see BenchmarkCommit), which is nothing next to a rollout step's pace as
// long as a pass pays it once (CommitAll), not once per Rollout. The
// crash test kills a writer (Commit and CommitAll in turn) with SIGKILL at
// random moments and checks that every record is whole and consistent, no
// acknowledged write is lost, a CommitAll lands whole or not at all and
// the sequence never goes back; power loss itself is left to bbolt's own
// tests.
//
// # Locking and schema
//
// bbolt holds an exclusive flock on the file while it is open. Open waits
// Options.LockTimeout for it and then fails with ErrLocked, naming the
// holder's pid from a "<file>.owner" note that the holder writes. The
// schema version lives in the file; Open refuses a newer one (ErrSchema)
// rather than misread it, and upgrades older ones in the opening
// transaction.
//
// A Store is safe for concurrent use: reads run in parallel, writes are
// serialised by bbolt.
package store
