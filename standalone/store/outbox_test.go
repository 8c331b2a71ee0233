package store

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func msg(body string) Message {
	return Message{Kind: "notification", Body: json.RawMessage(body)}
}

func bodies(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Body))
	}
	return out
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), DefaultFile)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := testRecord(1, 10)
	rec.Outbox = []Message{msg(`{"n":1}`), msg(`{"n":2}`)}
	if _, err := s.Commit(key, rec); err != nil {
		t.Fatal(err)
	}
	rec2 := testRecord(2, 20)
	rec2.Outbox = []Message{msg(`{"n":3}`)}
	if _, err := s.Commit("shop/ratings", rec2); err != nil {
		t.Fatal(err)
	}
	// A Commit that fails writes no message either.
	bad := testRecord(3, 30)
	bad.Outbox = []Message{msg(`{"n":4}`), {Kind: "notification", Body: json.RawMessage(`{`)}}
	if _, err := s.Commit(key, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid message: %v, want ErrInvalid", err)
	}

	got, err := s.Outbox()
	if err != nil {
		t.Fatal(err)
	}
	if b := strings.Join(bodies(got), " "); b != `{"n":1} {"n":2} {"n":3}` {
		t.Fatalf("outbox = %s, want the three saved in order", b)
	}
	ids := map[string]bool{}
	for i, m := range got {
		if m.ID == "" || ids[m.ID] || m.Time.IsZero() || m.Kind != "notification" {
			t.Fatalf("message %d: %+v", i, m)
		}
		ids[m.ID] = true
	}
	if got[0].Rollout != key || got[2].Rollout != "shop/ratings" {
		t.Fatalf("rollouts: %q, %q", got[0].Rollout, got[2].Rollout)
	}

	if err := s.Done(got[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(got[1].ID); err != nil {
		t.Fatalf("done twice: %v", err)
	}
	for _, id := range []string{"nope", "zz-1-0", "a-b-c"} {
		if err := s.Done(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Done(%q) = %v, want ErrBadID", id, err)
		}
	}

	// What is not done survives a restart, IDs and all; the file keeps its
	// ID, so new messages never reuse an old one.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, err := s.Outbox()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 || after[0].ID != got[0].ID || after[1].ID != got[2].ID {
		t.Fatalf("after reopening: %+v", after)
	}
	rec3 := testRecord(3, 30)
	rec3.Outbox = []Message{msg(`{"n":5}`)}
	if _, err := s.Commit(key, rec3); err != nil {
		t.Fatal(err)
	}
	after, _ = s.Outbox()
	if len(after) != 3 || ids[after[2].ID] || strings.Split(after[2].ID, "-")[0] != strings.Split(got[0].ID, "-")[0] {
		t.Fatalf("new message after reopening: %+v", after)
	}
}
