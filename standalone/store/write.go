package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Record is what one engine step changes for one Rollout. Nil fields leave
// the stored value as it is, so an analysis adapter can save run state
// without rewriting the status.
type Record struct {
	// Time is when the step ran (the engine's Input.Now). It stamps the
	// events and the Rollout's UpdatedAt; required when Events is not empty.
	Time time.Time
	// Status is the engine's Output.Status.
	Status *v1alpha1.RolloutStatus
	// Plan is the engine's Output.Plan, sealed. Its Version must equal the
	// status's traffic.planVersion: the store refuses to record a status
	// and a plan that disagree, so a restart never serves a plan the
	// status does not describe.
	Plan *plan.Plan
	// Events are appended to the Rollout's history.
	Events []engine.Event
	// Runs sets the state blob (JSON, opaque here) of analysis runs by run
	// name; a nil blob deletes. After the write, blobs of runs that the
	// stored status no longer lists in status.analysis are deleted: status
	// is the source of truth for which runs exist, so a late write from a
	// run that a newer step dropped is discarded rather than kept forever.
	Runs map[string]json.RawMessage
	// Outbox are messages to send once the step is saved (see Message);
	// their IDs are assigned here.
	Outbox []Message
}

// rolloutMeta is stored beside status and plan.
type rolloutMeta struct {
	// Seq is the Commit that last wrote the Rollout.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time,omitzero"`
	// PlanVersion lets Commit check consistency without decoding the plan.
	PlanVersion string `json:"planVersion,omitempty"`
}

// Event is one entry of a Rollout's history.
type Event struct {
	// Index is the entry's position in the Rollout's history, from 1; it is
	// never reused, also not after entries are trimmed.
	Index uint64 `json:"index"`
	// Seq is the Commit that recorded the event.
	Seq     uint64           `json:"seq"`
	Time    time.Time        `json:"time"`
	Type    engine.EventType `json:"type"`
	Reason  string           `json:"reason"`
	Message string           `json:"message"`
	// StepIndex and Step (status.stepDisplay, e.g. "2/5") are the step the
	// Rollout was at once the event's step was applied.
	StepIndex      *int32 `json:"stepIndex,omitempty"`
	Step           string `json:"step,omitempty"`
	CanaryRevision string `json:"canaryRevision,omitempty"`
}

// Commit writes rec for the Rollout key in one transaction and returns the
// transaction's sequence number, which grows with every Commit of the
// store. When Commit returns nil the write is on disk (bbolt fsyncs before
// returning); when it returns an error nothing was written.
func (s *Store) Commit(key string, rec Record) (uint64, error) {
	if _, _, err := SplitKey(key); err != nil {
		return 0, err
	}
	w, err := encode(rec)
	if err != nil {
		return 0, fmt.Errorf("commit %s: %w", key, err)
	}
	var seq uint64
	err = s.update(func(tx *bolt.Tx) error {
		var err error
		seq, err = s.commit(tx, key, rec, w)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("commit %s: %w", key, err)
	}
	return seq, nil
}

// encoded is a Record marshalled before the write transaction, so the
// single bbolt writer lock is held for as short as possible.
type encoded struct {
	status, plan []byte
}

func encode(rec Record) (encoded, error) {
	var w encoded
	var err error
	if len(rec.Events) > 0 && rec.Time.IsZero() {
		return w, fmt.Errorf("%w: events without a time", ErrInvalid)
	}
	if rec.Status != nil {
		if w.status, err = json.Marshal(rec.Status); err != nil {
			return w, fmt.Errorf("encode status: %w", err)
		}
	}
	if rec.Plan != nil {
		if rec.Plan.Version == "" {
			return w, fmt.Errorf("%w: plan is not sealed (empty version)", ErrInvalid)
		}
		if w.plan, err = json.Marshal(rec.Plan); err != nil {
			return w, fmt.Errorf("encode plan: %w", err)
		}
	}
	if err := encodeOutbox(rec.Outbox); err != nil {
		return w, err
	}
	for name, blob := range rec.Runs {
		if name == "" {
			return w, fmt.Errorf("%w: run without a name", ErrInvalid)
		}
		if blob != nil && !json.Valid(blob) {
			return w, fmt.Errorf("%w: state of run %q is not valid JSON", ErrInvalid, name)
		}
	}
	return w, nil
}

// commit writes rec in tx. It checks before it writes anything, so a
// refused record (ErrInvalid) leaves the transaction as it was.
func (s *Store) commit(tx *bolt.Tx, key string, rec Record, w encoded) (uint64, error) {
	var meta rolloutMeta
	status := rec.Status
	rb := tx.Bucket(bRollouts).Bucket([]byte(key))
	if rb != nil {
		if raw := rb.Get(kMeta); raw != nil {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return 0, fmt.Errorf("decode rollout meta: %w", err)
			}
		}
		if status == nil {
			var err error
			if status, err = decodeStatus(rb); err != nil {
				return 0, err
			}
		}
	}
	if rec.Plan != nil {
		meta.PlanVersion = rec.Plan.Version
	}
	if status != nil && meta.PlanVersion != "" && status.Traffic.PlanVersion != meta.PlanVersion {
		return 0, fmt.Errorf("%w: status names plan %q but the plan is %q",
			ErrInvalid, status.Traffic.PlanVersion, meta.PlanVersion)
	}
	if rb == nil {
		var err error
		if rb, err = tx.Bucket(bRollouts).CreateBucket([]byte(key)); err != nil {
			return 0, fmt.Errorf("create rollout bucket: %w", err)
		}
	}

	seq, err := tx.Bucket(bMeta).NextSequence()
	if err != nil {
		return 0, fmt.Errorf("next sequence: %w", err)
	}
	meta.Seq = seq
	if !rec.Time.IsZero() {
		meta.Time = rec.Time
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return 0, fmt.Errorf("encode rollout meta: %w", err)
	}
	puts := []struct{ k, v []byte }{{kStatus, w.status}, {kPlan, w.plan}, {kMeta, mb}}
	for _, p := range puts {
		if p.v == nil {
			continue
		}
		if err := rb.Put(p.k, p.v); err != nil {
			return 0, fmt.Errorf("write %s: %w", p.k, err)
		}
	}
	if err := writeRuns(rb, rec.Runs, status); err != nil {
		return 0, err
	}
	if err := s.appendHistory(tx, key, seq, rec, status); err != nil {
		return 0, err
	}
	if err := writeOutbox(tx, key, seq, rec.Time, rec.Outbox); err != nil {
		return 0, err
	}
	return seq, nil
}

func decodeStatus(rb *bolt.Bucket) (*v1alpha1.RolloutStatus, error) {
	raw := rb.Get(kStatus)
	if raw == nil {
		return nil, nil
	}
	st := &v1alpha1.RolloutStatus{}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

// writeRuns applies the run updates, then deletes the blobs of runs the
// status does not list (see Record.Runs).
func writeRuns(rb *bolt.Bucket, runs map[string]json.RawMessage, status *v1alpha1.RolloutStatus) error {
	listed := map[string]bool{}
	if status != nil {
		for _, r := range status.Analysis {
			listed[r.Name] = true
		}
	}
	b := rb.Bucket(bRuns)
	if b == nil {
		if len(runs) == 0 {
			return nil
		}
		var err error
		if b, err = rb.CreateBucket(bRuns); err != nil {
			return fmt.Errorf("create runs bucket: %w", err)
		}
	}
	for name, blob := range runs {
		if blob == nil || !listed[name] {
			continue // deleted below
		}
		if err := b.Put([]byte(name), blob); err != nil {
			return fmt.Errorf("write run %s: %w", name, err)
		}
	}
	var stale [][]byte
	if err := b.ForEach(func(k, _ []byte) error {
		if blob, set := runs[string(k)]; !listed[string(k)] || (set && blob == nil) {
			stale = append(stale, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("scan runs: %w", err)
	}
	// bbolt forbids changing a bucket inside ForEach, hence two passes.
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("delete run %s: %w", k, err)
		}
	}
	return nil
}

// appendHistory adds the events and trims the history to the limit.
func (s *Store) appendHistory(tx *bolt.Tx, key string, seq uint64, rec Record, status *v1alpha1.RolloutStatus) error {
	if len(rec.Events) == 0 {
		return nil
	}
	hb, err := tx.Bucket(bHistory).CreateBucketIfNotExists([]byte(key))
	if err != nil {
		return fmt.Errorf("create history bucket: %w", err)
	}
	for _, ev := range rec.Events {
		idx, err := hb.NextSequence()
		if err != nil {
			return fmt.Errorf("next history index: %w", err)
		}
		e := Event{Index: idx, Seq: seq, Time: rec.Time, Type: ev.Type, Reason: ev.Reason, Message: ev.Message}
		if status != nil {
			e.StepIndex, e.Step, e.CanaryRevision = status.CurrentStepIndex, status.StepDisplay, status.CanaryRevision
		}
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		if err := hb.Put(u64(idx), b); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
	}
	// Indexes are contiguous, so everything below last-limit+1 goes.
	last := hb.Sequence()
	if last <= uint64(s.historyLimit) {
		return nil
	}
	keep := u64(last - uint64(s.historyLimit) + 1)
	var old [][]byte
	c := hb.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, keep) < 0; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := hb.Delete(k); err != nil {
			return fmt.Errorf("trim history: %w", err)
		}
	}
	return nil
}

// Delete removes a Rollout's status, plan and run states, for a Rollout
// removed from Git. Its history stays, so `sluice history` can still tell
// what happened to it (and continues if the name comes back); PurgeHistory
// removes it. Deleting a Rollout that is not stored is not an error, so a
// runner that crashed midway can simply delete again.
func (s *Store) Delete(key string) error {
	if _, _, err := SplitKey(key); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		return deleteBucket(tx.Bucket(bRollouts), key)
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// PurgeHistory removes a Rollout's history. Like Delete, it succeeds when
// there is nothing to remove.
func (s *Store) PurgeHistory(key string) error {
	if _, _, err := SplitKey(key); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		return deleteBucket(tx.Bucket(bHistory), key)
	})
	if err != nil {
		return fmt.Errorf("purge history of %s: %w", key, err)
	}
	return nil
}

func deleteBucket(parent *bolt.Bucket, key string) error {
	if parent.Bucket([]byte(key)) == nil {
		return nil
	}
	return parent.DeleteBucket([]byte(key))
}

// GitCommit identifies a commit of the Rollouts repository.
type GitCommit struct {
	SHA string `json:"sha"`
	// Time is the commit's own time.
	Time time.Time `json:"time,omitzero"`
	// At is when Sluice evaluated it.
	At time.Time `json:"at,omitzero"`
}

// GitState is where the Git source stands.
type GitState struct {
	// Last is the last commit evaluated, applied or rejected; after a
	// restart the runner need not evaluate it again.
	Last GitCommit `json:"last,omitzero"`
	// LastError says why Last was rejected; empty when it was applied.
	LastError string `json:"lastError,omitempty"`
	// Good is the last commit applied whole (every manifest valid); its
	// Rollouts are the ones in force.
	Good GitCommit `json:"good,omitzero"`
}

// SetGit records where the Git source stands. Set Good only after the
// commit's Rollouts have been committed: re-applying a commit is harmless,
// skipping one is not.
func (s *Store) SetGit(g GitState) error {
	b, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode git state: %w", err)
	}
	err = s.update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kGit, b) })
	if err != nil {
		return fmt.Errorf("write git state: %w", err)
	}
	return nil
}
