package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// A pass of engine steps is one transaction; a Rollout whose step changed
// nothing costs nothing, and a batch of such Rollouts no transaction.
func TestCommitAll(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	keys := []string{"shop/reviews", "shop/ratings", "details"}
	first := make([]Change, len(keys))
	for i, k := range keys {
		rec := testRecord(1, 10, "run-1")
		rec.Runs = map[string]json.RawMessage{"run-1": json.RawMessage(`{"n":1}`)}
		rec.Outbox = []Message{msg(`{"k":"` + k + `"}`)}
		first[i] = Change{Key: k, Record: rec}
	}
	res := commitAll(t, s, first)
	for i, r := range res {
		if r.Err != nil || r.Unchanged || r.Seq != uint64(i+1) {
			t.Errorf("%s: %+v, want written as commit %d", keys[i], r, i+1)
		}
	}
	if n := s.Transactions(); n != 1 {
		t.Fatalf("%d transactions for one batch", n)
	}
	if ob, _ := s.Outbox(); len(ob) != len(keys) {
		t.Fatalf("outbox holds %d messages, want %d", len(ob), len(keys))
	}

	// The same steps again, as a pass that changed nothing hands them over:
	// no events, no messages, a later time.
	again := make([]Change, len(keys))
	for i, c := range first {
		rec := c.Record
		rec.Time, rec.Events, rec.Outbox = rec.Time.Add(time.Minute), nil, nil
		again[i] = Change{Key: c.Key, Record: rec}
	}
	res = commitAll(t, s, again)
	for i, r := range res {
		if r.Err != nil || !r.Unchanged || r.Seq != uint64(i+1) {
			t.Errorf("%s again: %+v, want unchanged, last written by commit %d", keys[i], r, i+1)
		}
	}
	if n := s.Transactions(); n != 1 {
		t.Fatalf("a batch of unchanged Rollouts wrote %d transactions", n-1)
	}
	if r, _ := s.Get(keys[0]); !r.UpdatedAt.Equal(first[0].Record.Time) || r.Seq != 1 {
		t.Errorf("an unchanged Rollout was rewritten: seq %d, updated %v", r.Seq, r.UpdatedAt)
	}

	// One changed among unchanged ones: one transaction, one write.
	changed := testRecord(2, 20, "run-1")
	changed.Events = nil
	again[1].Record = changed
	res = commitAll(t, s, again)
	if !res[0].Unchanged || res[1].Unchanged || res[1].Seq != 4 || !res[2].Unchanged {
		t.Errorf("one changed among three: %+v", res)
	}
	if n := s.Transactions(); n != 2 {
		t.Errorf("%d transactions after the second batch, want 2", n)
	}
	if h, _ := s.History(keys[1], 0); len(h) != 1 {
		t.Errorf("history of %s has %d events, want 1", keys[1], len(h))
	}
}

// What makes a record a change: anything that a reader would see after a
// restart, and nothing else.
func TestCommitAllUnchanged(t *testing.T) {
	t.Parallel()
	base := func() Record {
		rec := testRecord(1, 10, "run-1")
		rec.Events = nil
		rec.Runs = map[string]json.RawMessage{"run-1": json.RawMessage(`{"n":1}`)}
		return rec
	}
	cases := []struct {
		name      string
		edit      func(*Record)
		unchanged bool
	}{
		{"the same record", func(*Record) {}, true},
		{"a later time", func(r *Record) { r.Time = r.Time.Add(time.Hour) }, true},
		{"no run states", func(r *Record) { r.Runs = nil }, true},
		{"status and plan left as they are", func(r *Record) { r.Status, r.Plan = nil, nil }, true},
		{"an event", func(r *Record) { r.Events = testRecord(1, 10).Events }, false},
		{"an outbox message", func(r *Record) { r.Outbox = []Message{msg(`{}`)} }, false},
		{"another status", func(r *Record) { r.Status.Message = "waiting" }, false},
		{"another plan", func(r *Record) {
			other := testRecord(2, 20, "run-1")
			r.Status, r.Plan = other.Status, other.Plan
		}, false},
		{"another run state", func(r *Record) { r.Runs["run-1"] = json.RawMessage(`{"n":2}`) }, false},
		{"a run state deleted", func(r *Record) { r.Runs["run-1"] = nil }, false},
		{"a run the status no longer lists", func(r *Record) { r.Status.Analysis = nil }, false},
		{"a state for a run that is not listed", func(r *Record) { r.Runs["run-2"] = json.RawMessage(`{}`) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, Options{})
			mustCommit(t, s, key, base())
			rec := base()
			tc.edit(&rec)
			res := commitAll(t, s, []Change{{Key: key, Record: rec}})
			if res[0].Err != nil || res[0].Unchanged != tc.unchanged {
				t.Fatalf("result %+v, want unchanged %v", res[0], tc.unchanged)
			}
			if want := map[bool]uint64{true: 1, false: 2}[tc.unchanged]; s.Transactions() != want {
				t.Errorf("%d transactions, want %d", s.Transactions(), want)
			}
		})
	}
}

// A refused change is refused alone; a batch with nothing to write
// writes nothing.
func TestCommitAllRefused(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	step1, step2 := testRecord(1, 10), testRecord(2, 20)
	mustCommit(t, s, "shop/ratings", step1)
	res := commitAll(t, s, []Change{
		{Key: "shop/reviews", Record: step1},
		{Key: "shop/ratings", Record: Record{Status: step2.Status}}, // names a plan the file does not hold
		{Key: "shop/details", Record: Record{Status: step1.Status, Plan: step2.Plan}},
		{Key: "/bad", Record: step1},
	})
	if res[0].Err != nil || res[0].Seq != 2 {
		t.Errorf("valid change: %+v", res[0])
	}
	for i, r := range res[1:] {
		if !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("change %d: %+v, want ErrInvalid", i+1, r)
		}
	}
	if !strings.Contains(res[1].Err.Error(), "shop/ratings") {
		t.Errorf("error %q does not name the Rollout", res[1].Err)
	}
	if _, err := s.Get("shop/details"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused new Rollout was stored: %v", err)
	}
	if r, _ := s.Get("shop/ratings"); r.Seq != 1 || mustJSON(t, r.Status) != mustJSON(t, step1.Status) {
		t.Errorf("a refused change was written: seq %d", r.Seq)
	}

	before := s.Transactions()
	res = commitAll(t, s, []Change{{Key: "shop/ratings", Record: Record{Status: step2.Status}}})
	if !errors.Is(res[0].Err, ErrInvalid) || s.Transactions() != before {
		t.Errorf("a batch of one refused change: %+v, %d transactions", res[0], s.Transactions()-before)
	}
	if res, err := s.CommitAll(nil); err != nil || len(res) != 0 || s.Transactions() != before {
		t.Errorf("empty batch: %v, %v", res, err)
	}
}

func commitAll(t *testing.T, s *Store, changes []Change) []Result {
	t.Helper()
	res, err := s.CommitAll(changes)
	if err != nil {
		t.Fatalf("CommitAll: %v", err)
	}
	return res
}
