package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Change is one Rollout's Record in a CommitAll.
type Change struct {
	Key    string
	Record Record
}

// Result is what CommitAll did with one Change.
type Result struct {
	// Seq is the Commit that wrote the Rollout: this one, or for an
	// unchanged Rollout the one before.
	Seq uint64
	// Unchanged: the file already holds everything the Record says (same
	// status, plan and run states; no events, no outbox messages), so
	// nothing of it was written, not even its Time.
	Unchanged bool
	// Err: the Change was refused (ErrInvalid) and nothing of it
	// written. The others of the batch are not affected.
	Err error
}

// errNothingToWrite rolls back a CommitAll transaction whose changes all
// turned out unchanged or refused: bbolt flushes a transaction that
// commits even when it wrote nothing.
var errNothingToWrite = errors.New("nothing to write")

// CommitAll writes every Change in one transaction: the status, plan,
// events, run states and outbox messages of a whole pass of engine steps
// reach the disk with one flush, all of them or none. Each change is
// written as Commit writes it, with its own sequence number, in order;
// one the file already holds is skipped (Result.Unchanged), and when no
// change is left no transaction is written at all.
//
// A Change that cannot be written consistently is refused alone
// (Result.Err, ErrInvalid). CommitAll returns an error, and nil results,
// when the transaction fails: then nothing was written.
func (s *Store) CommitAll(changes []Change) ([]Result, error) {
	res := make([]Result, len(changes))
	enc := make([]encoded, len(changes))
	todo := 0
	for i, c := range changes {
		if _, _, err := SplitKey(c.Key); err != nil {
			res[i].Err = err
			continue
		}
		w, err := encode(c.Record)
		if err != nil {
			res[i].Err = fmt.Errorf("commit %s: %w", c.Key, err)
			continue
		}
		enc[i] = w
		todo++
	}
	if todo == 0 {
		return res, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		wrote := false
		for i, c := range changes {
			if res[i].Err != nil {
				continue
			}
			seq, same, err := unchanged(tx, c.Key, c.Record, enc[i])
			if err != nil {
				return fmt.Errorf("commit %s: %w", c.Key, err)
			}
			if same {
				res[i] = Result{Seq: seq, Unchanged: true}
				continue
			}
			seq, err = s.commit(tx, c.Key, c.Record, enc[i])
			if errors.Is(err, ErrInvalid) {
				res[i].Err = fmt.Errorf("commit %s: %w", c.Key, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("commit %s: %w", c.Key, err)
			}
			res[i].Seq, wrote = seq, true
		}
		if !wrote {
			return errNothingToWrite
		}
		return nil
	})
	switch {
	case errors.Is(err, errNothingToWrite):
		return res, nil
	case err != nil:
		return nil, err
	}
	return res, nil
}

// unchanged reports whether writing rec would leave the Rollout's
// status, plan and run states as the file holds them and add nothing to
// its history or the outbox; if so it returns the Commit that last wrote
// it. Comparing the encoded bytes makes "unchanged" mean exactly what a
// reader after a restart would see.
func unchanged(tx *bolt.Tx, key string, rec Record, w encoded) (uint64, bool, error) {
	if len(rec.Events) > 0 || len(rec.Outbox) > 0 {
		return 0, false, nil
	}
	rb := tx.Bucket(bRollouts).Bucket([]byte(key))
	if rb == nil {
		return 0, false, nil
	}
	if w.status != nil && !bytes.Equal(w.status, rb.Get(kStatus)) {
		return 0, false, nil
	}
	if w.plan != nil && !bytes.Equal(w.plan, rb.Get(kPlan)) {
		return 0, false, nil
	}
	status := rec.Status
	if status == nil {
		var err error
		if status, err = decodeStatus(rb); err != nil {
			return 0, false, err
		}
	}
	if !runsHeld(rb.Bucket(bRuns), rec.Runs, status) {
		return 0, false, nil
	}
	var meta rolloutMeta
	if raw := rb.Get(kMeta); raw != nil {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return 0, false, fmt.Errorf("decode rollout meta: %w", err)
		}
	}
	return meta.Seq, true, nil
}

// runsHeld reports whether writeRuns would change nothing in b: every
// run state set is stored as it is, every one deleted (or of a run the
// status does not list) is absent, and no stored run is unlisted.
func runsHeld(b *bolt.Bucket, runs map[string]json.RawMessage, status *v1alpha1.RolloutStatus) bool {
	listed := map[string]bool{}
	if status != nil {
		for _, r := range status.Analysis {
			listed[r.Name] = true
		}
	}
	for name, blob := range runs {
		var held []byte
		if b != nil {
			held = b.Get([]byte(name))
		}
		if !listed[name] {
			blob = nil
		}
		if !bytes.Equal(blob, held) || (blob == nil) != (held == nil) {
			return false
		}
	}
	if b == nil {
		return true
	}
	stale := false
	_ = b.ForEach(func(k, _ []byte) error {
		if !listed[string(k)] {
			stale = true
		}
		return nil
	})
	return !stale
}
