package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Rollout is what the store holds for one Rollout.
type Rollout struct {
	Key       string
	Namespace string
	Name      string
	// Seq is the Commit that last wrote the Rollout.
	Seq uint64
	// UpdatedAt is the Time of the last Commit that wrote the Rollout and
	// had one (CommitAll does not write an unchanged Rollout).
	UpdatedAt time.Time
	// Status and Plan are nil until a Commit wrote them.
	Status *v1alpha1.RolloutStatus
	Plan   *plan.Plan
}

// Get returns the stored Rollout, or ErrNotFound.
func (s *Store) Get(key string) (Rollout, error) {
	if _, _, err := SplitKey(key); err != nil {
		return Rollout{}, err
	}
	var r Rollout
	err := s.view(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bRollouts).Bucket([]byte(key))
		if rb == nil {
			return ErrNotFound
		}
		var err error
		r, err = decodeRollout(key, rb)
		return err
	})
	if err != nil {
		return Rollout{}, fmt.Errorf("get rollout %s: %w", key, err)
	}
	return r, nil
}

// List returns every stored Rollout, ordered by key.
func (s *Store) List() ([]Rollout, error) {
	var out []Rollout
	err := s.view(func(tx *bolt.Tx) error {
		rs := tx.Bucket(bRollouts)
		return rs.ForEachBucket(func(k []byte) error {
			r, err := decodeRollout(string(k), rs.Bucket(k))
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return out, nil
}

// Plans returns the last plan of every Rollout that has one, by key. It is
// what the xDS server serves after a restart before anything advances: the
// plan each status was last persisted with, which is at least as new as
// anything a proxy may have received.
func (s *Store) Plans() (map[string]plan.Plan, error) {
	out := map[string]plan.Plan{}
	err := s.view(func(tx *bolt.Tx) error {
		rs := tx.Bucket(bRollouts)
		return rs.ForEachBucket(func(k []byte) error {
			raw := rs.Bucket(k).Get(kPlan)
			if raw == nil {
				return nil
			}
			var p plan.Plan
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("decode plan of %s: %w", k, err)
			}
			out[string(k)] = p
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read plans: %w", err)
	}
	return out, nil
}

func decodeRollout(key string, rb *bolt.Bucket) (Rollout, error) {
	ns, name, err := SplitKey(key)
	if err != nil {
		return Rollout{}, err
	}
	r := Rollout{Key: key, Namespace: ns, Name: name}
	if raw := rb.Get(kMeta); raw != nil {
		var m rolloutMeta
		if err := json.Unmarshal(raw, &m); err != nil {
			return Rollout{}, fmt.Errorf("decode meta of %s: %w", key, err)
		}
		r.Seq, r.UpdatedAt = m.Seq, m.Time
	}
	if r.Status, err = decodeStatus(rb); err != nil {
		return Rollout{}, fmt.Errorf("%s: %w", key, err)
	}
	if raw := rb.Get(kPlan); raw != nil {
		r.Plan = &plan.Plan{}
		if err := json.Unmarshal(raw, r.Plan); err != nil {
			return Rollout{}, fmt.Errorf("decode plan of %s: %w", key, err)
		}
	}
	return r, nil
}

// Run returns the state blob of one analysis run of a Rollout, or
// ErrNotFound. Runs are scoped by Rollout because run names carry the
// Rollout's name but not its namespace.
func (s *Store) Run(key, name string) (json.RawMessage, error) {
	if _, _, err := SplitKey(key); err != nil {
		return nil, err
	}
	var out json.RawMessage
	err := s.view(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bRollouts).Bucket([]byte(key))
		if rb == nil || rb.Bucket(bRuns) == nil {
			return ErrNotFound
		}
		v := rb.Bucket(bRuns).Get([]byte(name))
		if v == nil {
			return ErrNotFound
		}
		// bbolt's slices live only as long as the transaction.
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get run %s of %s: %w", name, key, err)
	}
	return out, nil
}

// Runs returns the state blobs of all runs of a Rollout by name; empty, not
// an error, for an unknown Rollout.
func (s *Store) Runs(key string) (map[string]json.RawMessage, error) {
	if _, _, err := SplitKey(key); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	err := s.view(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bRollouts).Bucket([]byte(key))
		if rb == nil || rb.Bucket(bRuns) == nil {
			return nil
		}
		return rb.Bucket(bRuns).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("get runs of %s: %w", key, err)
	}
	return out, nil
}

// History returns the last limit events of a Rollout, oldest first; all
// kept events when limit <= 0. A Rollout without history has none, which is
// not an error.
func (s *Store) History(key string, limit int) ([]Event, error) {
	if _, _, err := SplitKey(key); err != nil {
		return nil, err
	}
	var out []Event
	err := s.view(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bHistory).Bucket([]byte(key))
		if hb == nil {
			return nil
		}
		// Walk back from the newest so a small limit reads a few entries.
		c := hb.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", key, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Git returns where the Git source stands; the zero value before the first
// SetGit.
func (s *Store) Git() (GitState, error) {
	var g GitState
	err := s.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bMeta).Get(kGit)
		if raw == nil {
			return nil
		}
		return json.Unmarshal(raw, &g)
	})
	if err != nil {
		return GitState{}, fmt.Errorf("read git state: %w", err)
	}
	return g, nil
}

// Seq returns the sequence number of the last Commit; zero for a new file.
func (s *Store) Seq() (uint64, error) {
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error {
		seq = tx.Bucket(bMeta).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read sequence: %w", err)
	}
	return seq, nil
}
